"""A rejected row is never read as a drop (UPLOAD_SPEC "What happens to bad data"; DESIGN
invariant 6): the class whose teacher left staff.csv keeps its roster, and so does the teacher
it still names, and the report says why. Through the real pipeline, native and OneRoster."""

from __future__ import annotations

import polars as pl

from rostering_pipeline.decision import WHY
from rostering_pipeline.roster.diff import kept_keys
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"


def _latest_report(pipeline: Pipeline) -> str:
    return [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]


def _roster(pipeline: Pipeline) -> dict[str, list[tuple]]:
    return {
        "classes": pipeline.query("select class_id, teacher_id from roster.classes order by 1"),
        "enrollments": pipeline.query(
            "select class_id, student_id from roster.enrollments order by 1, 2"
        ),
        "staff": pipeline.query("select staff_id from roster.staff order by 1"),
        "accounts": pipeline.query("select staff_id, status from roster.accounts order by 1"),
    }


def test_a_class_whose_teacher_left_staff_csv_keeps_its_roster_and_its_teacher(
    pipeline: Pipeline,
) -> None:
    day1 = day_one()
    day1["enrollments.csv"] = "class_id,student_id\nC1,S1\nC1,S2\nC2,S1\n"
    pipeline.upload(LEA, day1, day=1)
    pipeline.sync()
    before = _roster(pipeline)
    day2 = dict(day1)
    day2["staff.csv"] = "\n".join(day1["staff.csv"].splitlines()[:2]) + "\n"  # T2 left

    pipeline.upload(LEA, day2, day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _roster(pipeline) == before
    assert before["classes"] == [("C1", "T1"), ("C2", "T2")]
    assert ("T2", "active") in before["accounts"]
    assert (
        pipeline.query("select entity, key, change from roster.changes where change = 'drop'") == []
    )
    rejected = pipeline.query(
        "select file, line, \"column\", value, fix from quality.rejections where level = 'row'"
        " order by file, line"
    )
    assert [r[:4] for r in rejected] == [
        ("classes.csv", 3, "teacher_id", "T2"),
        ("enrollments.csv", 4, "class_id", "C2"),
    ]
    assert rejected[1][4].startswith("That class_id was itself rejected: see classes.csv line 3;")
    report = _latest_report(pipeline)
    assert "Kept, not dropped: staff T2." in report
    assert "a row that was rejected still names them" in report


def test_the_same_class_through_oneroster_keeps_its_roster(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, {"export.zip": zipped(oneroster_day_one())}, day=1)
    pipeline.sync()
    before = _roster(pipeline)
    day2 = oneroster_day_one()
    day2["users.csv"] = day2["users.csv"].replace(
        "T2,,,true,O2,teacher,bcole,,Ben,Cole,,,ben.cole@example.org,,,,,\n", ""
    )
    pipeline.upload(LEA, {"export.zip": zipped(day2)}, day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _roster(pipeline) == before
    assert ("C2", "T2") in before["classes"] and ("C1", "T2") in pipeline.query(
        "select class_id, staff_id from roster.co_teachers"
    )
    assert pipeline.query("select count(*) from roster.changes where change = 'drop'") == [(0,)]
    fixes = pipeline.query(
        "select file, line, \"column\", fix from quality.rejections where level = 'row'"
        " order by file, line"
    )
    assert [f[:3] for f in fixes] == [
        ("enrollments.csv", 3, "userSourcedId"),  # C2's teacher
        ("enrollments.csv", 6, "classSourcedId"),  # C2's student: its class was rejected
        ("enrollments.csv", 8, "userSourcedId"),  # C1's co-teacher
    ]
    assert fixes[1][3].startswith(
        "That classSourcedId was itself rejected: see enrollments.csv line 3;"
    )
    assert "Kept, not dropped: staff T2." in _latest_report(pipeline)


def _keys(**columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema={c: pl.String for c in columns})


def test_kept_keys_follow_a_chain_from_an_enrollment_to_its_campus() -> None:
    rejected = {"enrollments": _keys(class_id=["C2"], student_id=["S9"])}
    applied = {
        "campuses": _keys(campus_id=["101912002"]),
        "staff": _keys(staff_id=["T2"], campus_id=["101912002"]),
        "students": _keys(student_id=["S9"], campus_id=["101912002"]),
        "classes": _keys(class_id=["C2"], campus_id=["101912002"], teacher_id=["T2"]),
        "enrollments": _keys(class_id=["C2", "C2"], student_id=["S9", "S8"]),
        "co_teachers": _keys(class_id=[], staff_id=[]),
    }

    kept = kept_keys(rejected, applied)

    assert {e: sorted(k.drop(WHY).rows()) for e, k in kept.items()} == {
        "campuses": [("101912002",)],
        "staff": [("T2",)],
        "students": [("S9",)],
        "classes": [("C2",)],
        # C2 is kept because the rejected enrollment names it, not rejected itself: its
        # other enrollment (S8) the upload left out is a drop.
        "enrollments": [("C2", "S9")],
        "co_teachers": [],
    }
    assert kept["staff"][WHY].to_list() == ["named by a kept row"]
