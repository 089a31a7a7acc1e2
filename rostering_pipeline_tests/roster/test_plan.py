"""plan_upload: what an upload does to its LEA's roster (apply, or hold, reject, skip), decided
against a real DuckDB warehouse holding the uploads before it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline import ledger
from rostering_pipeline.lea_settings import Blackout, LeaSettings
from rostering_pipeline.roster.apply import apply_upload
from rostering_pipeline.roster.plan import plan_upload
from rostering_pipeline.upload_spec.validate import ValidatedUpload, validate_upload
from rostering_pipeline.uploads import ArchivedFile, Upload
from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline_tests.uploads import CAMPUSES, CLASSES, STAFF, day_one, day_two

LEA = "101912"
DAY_ONE = datetime(2026, 9, 1, 12, tzinfo=UTC)
STUDENTS_HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id\n"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with WarehouseResource(path=str(tmp_path / "warehouse.duckdb")).connect() as conn:
        yield conn


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


def received(
    conn: duckdb.DuckDBPyConnection, archive: Path, files: dict[str, str], day: int
) -> tuple[Upload, ValidatedUpload]:
    """An upload received at noon of `day` (recorded as the ledger records it), validated."""
    at = DAY_ONE + timedelta(days=day - 1)
    contents = {name: text.encode() for name, text in files.items()}
    archived = tuple(
        ArchivedFile(name, len(data), int(at.timestamp()), hashlib.sha256(data).hexdigest(), "")
        for name, data in sorted(contents.items())
    )
    upload = Upload(f"{LEA}-day{day}-{len(archived)}", LEA, at, f"{LEA}-key{day}", archived)
    ledger.record_received(conn, archive, upload, at, run_id="unit")
    return upload, validate_upload(LEA, contents, at.date())


def applied(
    conn: duckdb.DuckDBPyConnection, archive: Path, files: dict[str, str], day: int
) -> Upload:
    upload, validated = received(conn, archive, files, day)
    plan = plan_upload(conn, upload, validated)
    assert plan.decision == "apply", plan.reason
    apply_upload(conn, upload, validated, plan, upload.received_at)
    return upload


def students(n: int) -> dict[str, str]:
    """Day one's files with students S1…Sn, each in class C1."""
    rows = "".join(f"S{i},Kid,Number{i},2016-03-04,04,101912001\n" for i in range(1, n + 1))
    return {
        "campuses.csv": CAMPUSES,
        "staff.csv": STAFF,
        "students.csv": STUDENTS_HEADER + rows,
        "classes.csv": CLASSES,
        "enrollments.csv": "class_id,student_id\n" + "".join(f"C1,S{i}\n" for i in range(1, n + 1)),
    }


def test_a_first_upload_is_applied_whole(conn: duckdb.DuckDBPyConnection, archive: Path) -> None:
    upload, validated = received(conn, archive, day_one(), 1)

    plan = plan_upload(conn, upload, validated)

    assert (plan.decision, plan.reason, plan.base_upload_id) == ("apply", "", None)
    every_row_added = {
        entity: {"add": table.height, "update": 0, "drop": 0}
        for entity, table in validated.tables.items()
    }
    assert plan.counts() == every_row_added
    assert plan.active == dict.fromkeys(validated.tables, 0)


def test_the_next_upload_is_diffed_against_the_applied_one(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    first = applied(conn, archive, day_one(), 1)
    upload, validated = received(conn, archive, day_two(), 2)

    plan = plan_upload(conn, upload, validated)

    assert (plan.decision, plan.base_upload_id) == ("apply", first.upload_id)
    students = plan.entities["students"]
    assert_frame_equal(
        students.changes.select("key", "change"),
        pl.DataFrame({"key": ["S4", "S3", "S2"], "change": ["add", "update", "drop"]}),
        check_row_order=False,
    )
    assert plan.entities["enrollments"].counts == {"add": 1, "update": 0, "drop": 1}


def test_an_upload_with_a_fault_of_the_whole_upload_is_rejected(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    files = day_one()
    del files["students.csv"]  # a required file missing: the upload as a whole is refused
    upload, validated = received(conn, archive, files, 1)

    plan = plan_upload(conn, upload, validated)

    assert plan.decision == "rejected"
    assert "faults that stop it as a whole" in plan.reason
    assert plan.entities == {}


def test_the_same_files_again_are_a_duplicate(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    first = applied(conn, archive, day_one(), 1)
    upload, validated = received(conn, archive, day_one(), 2)

    plan = plan_upload(conn, upload, validated)

    assert plan.decision == "duplicate"
    assert plan.reason == f"the same files as {first.upload_id}, already applied"


def test_an_upload_received_before_the_applied_one_is_superseded(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    older, validated = received(conn, archive, day_one(), 1)
    newer = applied(conn, archive, day_two(), 2)

    plan = plan_upload(conn, older, validated)

    assert plan.decision == "superseded"
    assert newer.upload_id in plan.reason


def test_an_upload_decided_before_keeps_its_decision(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    upload = applied(conn, archive, day_one(), 1)
    validated = validate_upload(
        LEA, {n: t.encode() for n, t in day_one().items()}, date(2026, 9, 1)
    )

    plan = plan_upload(conn, upload, validated)

    assert (plan.decision, plan.reason) == ("applied", "already applied")
    assert plan.entities == {}


DROPS = "40 of 100 students, 40 of 100 enrollments"


@pytest.mark.parametrize(
    ("operator", "decision", "reason"),
    [
        ("hold", "held", f"the upload would drop {DROPS}, more than the safeguard allows"),
        ("release", "apply", f"an operator released the upload held for dropping {DROPS}"),
        ("reject", "rejected", "an operator rejected the upload after the safeguard held it"),
    ],
)
def test_dropping_more_than_the_safeguard_allows_holds_the_upload_for_an_operator(
    conn: duckdb.DuckDBPyConnection, archive: Path, operator: str, decision: str, reason: str
) -> None:
    applied(conn, archive, students(100), 1)
    upload, validated = received(conn, archive, students(60), 2)
    held = plan_upload(conn, upload, validated)
    assert (held.decision, held.held_by) == ("held", "safeguard")
    apply_upload(conn, upload, validated, held, upload.received_at)  # records it held

    plan = plan_upload(conn, upload, validated, held_upload=operator)

    assert (plan.decision, plan.reason) == (decision, reason)


def test_an_upload_received_in_a_blackout_is_held_until_the_blackout_ends(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    settings = LeaSettings(blackouts=(Blackout(start=date(2026, 9, 1), end=date(2026, 9, 3)),))
    upload, validated = received(conn, archive, day_one(), 2)

    during = plan_upload(conn, upload, validated, settings, today=date(2026, 9, 3))
    after = plan_upload(conn, upload, validated, settings, today=date(2026, 9, 4))

    assert (during.decision, during.held_by) == ("held", "blackout")
    assert "sync blackout 2026-09-01 to 2026-09-03" in during.reason
    assert after.decision == "apply"


def test_additions_only_keeps_what_the_upload_leaves_out(
    conn: duckdb.DuckDBPyConnection, archive: Path
) -> None:
    applied(conn, archive, day_one(), 1)
    upload, validated = received(conn, archive, day_two(), 2)

    plan = plan_upload(conn, upload, validated, LeaSettings(mode="additions_only"))

    assert plan.decision == "apply"
    assert plan.total("drop") == 0
    # S2 and S2's enrollment in C1 are missing from day two: both kept.
    assert plan.reason == "additions-only mode: 2 records missing from the upload were kept"
    assert plan.entities["students"].counts == {"add": 1, "update": 1, "drop": 0}
