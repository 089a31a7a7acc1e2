"""Account semantics across LEAs and people (issue 15 point 9), through the real pipeline: an
inactive account's login passes to the LEA that now lists the email, an active one is still
refused; an ID or a login that passes to another person is applied and flagged."""

from __future__ import annotations

from rostering_pipeline.upload_spec.rules import LOGIN_TAKEN
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import day_one

A, B = "101912", "227901"
ANA = "ana.reyes@example.org"


def _lea_b(*, with_ana: bool) -> dict[str, str]:
    files = {
        k: v.replace(A, B).replace("@example.org", "@b.example.org") for k, v in day_one().items()
    }
    if with_ana:
        files["staff.csv"] += f"T9,Ana,Reyes,{ANA},{B}001\n"
    return files


def _a_without_ana() -> dict[str, str]:
    files = day_one()
    files["staff.csv"] = "staff_id,first_name,last_name,email,campus_id\nT2,Ben,Cole,ben.cole@example.org,101912002\n"  # fmt: skip
    files["classes.csv"] = files["classes.csv"].replace("Grade 4 Math,T1", "Grade 4 Math,T2")
    return files


def _report(pipeline: Pipeline, lea: str) -> str:
    return [t for n, t in pipeline.outbox(lea).items() if n.startswith("sync_report_")][-1]


def test_a_teacher_who_moved_takes_their_login_to_the_new_lea(pipeline: Pipeline) -> None:
    pipeline.upload(A, day_one(), day=1)
    pipeline.upload(B, _lea_b(with_ana=False), day=1)
    pipeline.sync()
    pipeline.upload(A, _a_without_ana(), day=2)  # Ana left A: her account is deactivated
    pipeline.sync()
    pipeline.upload(B, _lea_b(with_ana=True), day=3)  # and B lists her with the same email

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select count(*) from quality.rejections where lea_id = ?", [B]) == [(0,)]
    assert pipeline.query(
        "select lea_id, staff_id, username, status from roster.accounts"
        " where username like ? order by 1",
        [f"{ANA}%"],
    ) == [
        (A, "T1", f"{ANA} (released 2026-09-03 to LEA {B})", "inactive"),
        (B, "T9", ANA, "active"),
    ]
    assert pipeline.query(
        "select lea_id, key, old_values, new_values from roster.changes"
        " where entity = 'accounts' order by 1"
    ) == [
        (
            A,
            "T1",
            f'{{"username": "{ANA}"}}',
            f'{{"username": "{ANA} (released 2026-09-03 to LEA {B})"}}',
        ),  # fmt: skip
        (B, "T9", f'{{"login_of": "LEA {A} staff_id T1 (inactive)"}}', f'{{"username": "{ANA}"}}'),
    ]


def test_an_active_login_of_another_lea_is_still_refused(pipeline: Pipeline) -> None:
    pipeline.upload(A, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(B, _lea_b(with_ana=True), day=2)

    pipeline.sync()

    assert pipeline.query(
        'select file, line, "column", rule from quality.rejections where lea_id = ?', [B]
    ) == [("staff.csv", 4, "email", LOGIN_TAKEN)]
    fix = pipeline.query("select fix from quality.rejections where lea_id = ?", [B])[0][0]
    assert "retire" not in fix and "leave them out of its upload" in fix
    assert pipeline.query(
        "select lea_id, status from roster.accounts where username = ?", [ANA]
    ) == [  # fmt: skip
        (A, "active")
    ]


def test_an_id_reused_for_another_person_and_a_login_passed_on_are_flagged(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(A, day_one(), day=1)
    pipeline.sync()
    files = day_one()
    files["students.csv"] = files["students.csv"].replace(
        "S1,Luz,Peña,2016-03-04", "S1,Omar,Diaz,2015-01-20"
    )
    files["staff.csv"] = (
        files["staff.csv"]
        .replace(ANA, "ana.reyes2@example.org")
        .replace("ben.cole@example.org", ANA)
    )
    pipeline.upload(A, files, day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select staff_id, username from roster.accounts order by 1") == [
        ("T1", "ana.reyes2@example.org"),
        ("T2", ANA),
    ]
    report = _report(pipeline, A)
    assert "Applied, but please check:" in report
    assert "- student_id S1: first name, last name and birth date all changed." in report
    assert "- staff_id T2 now has the email (and login) staff_id T1 had" in report
    assert "Omar" not in report and "2015-01-20" not in report
