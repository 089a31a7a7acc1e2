"""A staff email that is already another LEA's login is a conflict for the second LEA, never a
merge: the row is rejected with a fix, the first LEA's account is untouched, and the classes
of that teacher are rejected and keep their applied version. Through the real pipeline."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from rostering_pipeline import ledger
from rostering_pipeline.decision import EntityDiff
from rostering_pipeline.roster.apply import apply_upload
from rostering_pipeline.roster.plan import plan_upload
from rostering_pipeline.upload_spec.files import ENTITIES
from rostering_pipeline.upload_spec.rules import LOGIN_TAKEN
from rostering_pipeline.upload_spec.validate import validate_upload
from rostering_pipeline.uploads import ArchivedFile, Upload, make_upload
from rostering_pipeline.warehouse import WarehouseResource, transaction
from rostering_pipeline.warehouse.roster import LoginTaken, write_accounts
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.faults import messages_shown
from rostering_pipeline_tests.postgres import fresh_warehouse_dsn
from rostering_pipeline_tests.uploads import day_one

FIRST = "101912"
SECOND = "202020"
#: 2026-09-01 12:00 UTC, as the pipeline fixture's day 1.
DAY_ONE = 1_788_264_000


def _second_lea(t9_email: str) -> dict[str, str]:
    """LEA 202020: T9 teaches C1, T8 teaches C2; S1 in both classes."""
    return {
        "campuses.csv": "campus_id,campus_name\n202020001,Hill Elementary\n",
        "staff.csv": (
            "staff_id,first_name,last_name,email,campus_id\n"
            f"T9,Ana,Reyes,{t9_email},202020001\n"
            "T8,Cy,Lund,cy.lund@second.example.org,202020001\n"
        ),
        "students.csv": (
            "student_id,first_name,last_name,birth_date,grade,campus_id\n"
            "S1,Eva,Diaz,2016-03-04,04,202020001\n"
        ),
        "classes.csv": (
            "class_id,campus_id,class_name,teacher_id\n"
            "C1,202020001,Grade 4 Math,T9\n"
            "C2,202020001,Grade 4 Art,T8\n"
        ),
        "enrollments.csv": "class_id,student_id\nC1,S1\nC2,S1\n",
    }


def test_validate_upload_rejects_a_login_taken_elsewhere_case_insensitively() -> None:
    files = {k: v.encode() for k, v in _second_lea("Ana.Reyes@Example.org").items()}

    validated = validate_upload(
        SECOND, files, date(2026, 9, 1), taken_logins=frozenset({"ana.reyes@example.org"})
    )

    rows = validated.rejections.select("file", "line", "column", "rule").rows()
    assert ("staff.csv", 2, "email", LOGIN_TAKEN) in rows
    assert ("classes.csv", 2, "teacher_id", "teacher_id must be a staff_id in staff.csv") in rows
    assert validated.tables["staff"]["staff_id"].to_list() == ["T8"]
    assert validated.tables["classes"]["class_id"].to_list() == ["C2"]
    # Without other LEAs' logins the same upload is clean: the rule is the only cause.
    clean = validate_upload(SECOND, files, date(2026, 9, 1))
    assert clean.rejections.filter(clean.rejections["level"] != "warning").is_empty()


@BOTH_WAREHOUSES
def test_second_lea_using_a_taken_login_is_told_and_nothing_merges(pipeline: Pipeline) -> None:
    pipeline.upload(FIRST, day_one(), day=1)
    assert [r.success for r in pipeline.sync()] == [True]
    pipeline.upload(SECOND, _second_lea("t9@second.example.org"), day=1)
    assert [r.success for r in pipeline.sync()] == [True]

    # Day 2: LEA 202020 now sends LEA 101912's login (in other case) for its T9.
    pipeline.upload(SECOND, _second_lea("ANA.REYES@example.org"), day=2)
    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    rejected = pipeline.query(
        'select lea_id, file, line, "column", rule, value, fix from quality.rejections'
        " where level = 'row' order by lea_id, file, line"
    )
    assert [r[:5] for r in rejected] == [
        (SECOND, "classes.csv", 2, "teacher_id", "teacher_id must be a staff_id in staff.csv"),
        (SECOND, "enrollments.csv", 2, "class_id", "class_id must be a class_id in classes.csv"),
        (SECOND, "staff.csv", 2, "email", LOGIN_TAKEN),
    ]
    assert rejected[2][5] == "ANA.REYES@example.org"
    assert "own address at this LEA" in rejected[2][6]
    # The first LEA's account is untouched; the second keeps T9's own login and its class.
    assert pipeline.query(
        "select lea_id, staff_id, username, status from roster.accounts order by 1, 2"
    ) == [
        (FIRST, "T1", "ana.reyes@example.org", "active"),
        (FIRST, "T2", "ben.cole@example.org", "active"),
        (SECOND, "T8", "cy.lund@second.example.org", "active"),
        (SECOND, "T9", "t9@second.example.org", "active"),
    ]
    assert pipeline.query(
        "select class_id, teacher_id from roster.classes where lea_id = ? order by 1", [SECOND]
    ) == [("C1", "T9"), ("C2", "T8")]
    assert pipeline.query("select count(*) from roster.enrollments where lea_id = ?", [SECOND]) == [
        (2,)
    ]
    assert LOGIN_TAKEN in pipeline.outbox(SECOND)["sync_report_20260902T120000Z.md"]
    assert not any(LOGIN_TAKEN in text for text in pipeline.outbox(FIRST).values())


def _archived(lea_id: str, files: dict[str, str], root: Path) -> Upload:
    """An upload as raw_upload records it: each file archived by sha256, received on day 1."""
    archived = []
    for name, text in files.items():
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        path = root / digest
        path.write_bytes(data)
        archived.append(ArchivedFile(name, len(data), DAY_ONE, digest, str(path)))
    received = datetime.fromtimestamp(DAY_ONE, UTC)
    return make_upload(lea_id, f"{lea_id}-overlap", archived, received_at=received)


@BOTH_WAREHOUSES
def test_a_login_taken_by_an_overlapping_run_refuses_the_apply_and_nothing_merges(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # LEA 202020's upload is validated while LEA 101912's run, which creates the login
    # ana.reyes@example.org, has not applied yet: validation sees no conflict.
    upload = _archived(SECOND, _second_lea("ana.reyes@example.org"), tmp_path)
    validated = validate_upload(SECOND, upload.read_files(), date(2026, 9, 1))
    assert validated.rejections.filter(validated.rejections["level"] != "warning").is_empty()
    pipeline.upload(FIRST, day_one(), day=1)
    assert [r.success for r in pipeline.sync()] == [True]  # then LEA 101912's run applies
    now = datetime.now(UTC)

    with pipeline.warehouse_resource().connect() as conn:
        ledger.record_received(conn, tmp_path, upload, now, "overlapping-run")
        plan = plan_upload(conn, upload, validated)
        with pytest.raises(LoginTaken) as refused:
            apply_upload(conn, upload, validated, plan, now)
        status = conn.execute(
            "select status from ingest.uploads where upload_id = ?", [upload.upload_id]
        ).fetchone()
        second_rows = [
            conn.execute(f"select count(*) from roster.{e} where lea_id = ?", [SECOND]).fetchone()
            for e in ENTITIES
        ]
        # The upload's next run validates it again, with the logins now taken.
        again = validate_upload(
            SECOND,
            upload.read_files(),
            date(2026, 9, 1),
            taken_logins=frozenset(
                u for (u,) in conn.execute("select username from roster.accounts").fetchall()
            ),
        )
        apply_upload(conn, upload, again, plan_upload(conn, upload, again), now)
        accounts = conn.execute(
            "select lea_id, staff_id, username from roster.accounts order by 1, 2"
        ).fetchall()

    message = str(refused.value)
    assert f"LEA {SECOND}: the email of staff_id T9 is the login of an account of LEA {FIRST}" in (
        message
    )
    assert "ana.reyes" not in message.lower()  # IDs only in what the UI shows
    assert status == ("received",)  # the transaction rolled back: nothing decided, nothing lost
    assert second_rows == [(0,)] * len(ENTITIES)
    assert ("staff.csv", 2, "email", LOGIN_TAKEN) in again.rejections.select(
        "file", "line", "column", "rule"
    ).rows()
    assert accounts == [
        (FIRST, "T1", "ana.reyes@example.org"),
        (FIRST, "T2", "ben.cole@example.org"),
        (SECOND, "T8", "cy.lund@second.example.org"),
    ]


def _new_staff(staff_id: str, email: str) -> EntityDiff:
    return _staff_rows(pl.DataFrame({"staff_id": [staff_id], "email": [email]}))


def _staff_rows(rows: pl.DataFrame) -> EntityDiff:
    """The staff diff that adds or updates `rows` (staff_id, email) and drops nobody."""
    return EntityDiff("staff", rows, rows.clear().select("staff_id"), pl.DataFrame())


def test_two_leas_applying_one_login_at_the_same_moment_on_postgres_one_is_refused() -> None:
    """On PostgreSQL two LEAs' applies run at once (one DuckDB file never lets them): both
    check the login before either commits, so neither sees the other's. The database's one
    active account per login makes the second wait for the first and then refuses it."""
    with fresh_warehouse_dsn() as dsn:
        warehouse = WarehouseResource(postgres_dsn=dsn)
        now = datetime.now(UTC)
        outcome: dict[str, object] = {}
        with warehouse.connect() as first, warehouse.connect() as second:
            with transaction(first, lea_id=FIRST):
                write_accounts(first, FIRST, "u1", _new_staff("T1", "ana@x.org"), now)

                def apply_second() -> None:
                    try:
                        with transaction(second, lea_id=SECOND):
                            write_accounts(second, SECOND, "u2", _new_staff("T9", "ANA@x.org"), now)
                        outcome["second"] = "applied"
                    except LoginTaken as refused:
                        outcome["second"] = refused

                thread = threading.Thread(target=apply_second)
                thread.start()
                thread.join(timeout=1.0)
                # The second LEA waits on the first's uncommitted login, rather than passing.
                assert thread.is_alive() and "second" not in outcome
            thread.join(timeout=30)  # the first committed: the second is refused
            assert not thread.is_alive()
            accounts = first.execute(
                "select lea_id, staff_id, username, status from roster.accounts"
            ).fetchall()
    assert isinstance(outcome["second"], LoginTaken), outcome
    shown = messages_shown(outcome["second"])
    assert f"LEA {SECOND}" in shown and "ana" not in shown.lower()
    assert accounts == [(FIRST, "T1", "ana@x.org", "active")]


def test_one_upload_may_swap_two_staff_members_emails_on_postgres() -> None:
    """The one-login check runs when the upload's accounts are written, not per row: an upload
    that swaps two colleagues' emails is applied."""
    with fresh_warehouse_dsn() as dsn:
        warehouse = WarehouseResource(postgres_dsn=dsn)
        now = datetime.now(UTC)
        both = pl.DataFrame({"staff_id": ["T1", "T2"], "email": ["a@x.org", "b@x.org"]})
        swapped = pl.DataFrame({"staff_id": ["T1", "T2"], "email": ["b@x.org", "a@x.org"]})
        with warehouse.connect() as conn:
            for rows in (both, swapped):
                with transaction(conn, lea_id=FIRST):
                    write_accounts(conn, FIRST, "u", _staff_rows(rows), now)
            accounts = conn.execute(
                "select staff_id, username from roster.accounts order by 1"
            ).fetchall()
    assert accounts == [("T1", "b@x.org"), ("T2", "a@x.org")]
