"""The pipeline end to end: SFTP inbox → sensor → runs → DuckDB roster → outbox report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.faulty_sftp import FaultySftpServer
from rostering_pipeline_tests.uploads import day_one, day_two

pytestmark = BOTH_WAREHOUSES

LEA = "101912"


def _changes(pipeline: Pipeline, upload_status: str = "applied") -> set[tuple[str, str, str]]:
    rows = pipeline.query(
        "select entity, key, change from roster.changes c join ingest.uploads u using (upload_id)"
        " where u.received_at = (select max(received_at) from ingest.uploads where status = ?)",
        [upload_status],
    )
    return set(rows)


def test_day_one_upload_is_applied_and_reported(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one())

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query(
        "select student_id, grade from roster.students where lea_id = ? order by 1", [LEA]
    ) == [("S1", "04"), ("S2", "04"), ("S3", "07")]
    assert pipeline.query("select count(*) from roster.enrollments") == [(3,)]
    assert pipeline.query("select staff_id, username, status from roster.accounts order by 1") == [
        ("T1", "ana.reyes@example.org", "active"),
        ("T2", "ben.cole@example.org", "active"),
    ]
    outbox = pipeline.outbox(LEA)
    report = next(text for name, text in outbox.items() if name.startswith("sync_report_"))
    assert "**Applied**" in report
    assert "| students | 3 | 0 | 0 | 0 |" in report
    assert pipeline.inbox(LEA) == []
    # The rows above came from the backend under test: on PostgreSQL no DuckDB file exists.
    assert pipeline.warehouse.exists() == (pipeline.backend == "duckdb")


def test_day_two_changes_are_recorded_exactly(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _changes(pipeline) == {
        ("students", "S4", "add"),
        ("students", "S2", "drop"),
        ("students", "S3", "update"),
        ("enrollments", "C1|S4", "add"),
        ("enrollments", "C1|S2", "drop"),
    }
    update = pipeline.query(
        "select old_values, new_values, source_line from roster.changes where key = 'S3'"
        " and change = 'update'"
    )
    assert update == [('{"grade":"07"}', '{"grade":"08"}', 3)]
    assert pipeline.query(
        "select student_id from roster.students where lea_id = ? order by 1", [LEA]
    ) == [("S1",), ("S3",), ("S4",)]


def test_a_pair_listed_twice_is_applied_once_without_a_rejection(pipeline: Pipeline) -> None:
    files = day_one()
    files["enrollments.csv"] += "C1,S1\nC2,S3\n"
    files["co_teachers.csv"] = "class_id,staff_id\nC1,T2\nC1,T2\n"
    pipeline.upload(LEA, files)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select count(*) from quality.rejections where level <> 'warning'") == [
        (0,)
    ]
    assert pipeline.query("select class_id, student_id from roster.enrollments order by 1, 2") == [
        ("C1", "S1"),
        ("C1", "S2"),
        ("C2", "S3"),
    ]
    assert pipeline.query("select class_id, staff_id from roster.co_teachers") == [("C1", "T2")]
    assert pipeline.query(
        "select key, count(*) from roster.changes where entity = 'enrollments' group by 1 order by 1"
    ) == [("C1|S1", 1), ("C1|S2", 1), ("C2|S3", 1)]


def test_resent_upload_changes_nothing(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    before = pipeline.query("select count(*) from roster.changes")
    pipeline.upload(LEA, day_one(), day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads order by received_at") == [
        ("applied",),
        ("duplicate",),
    ]
    assert pipeline.query("select count(*) from roster.changes") == before
    report = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]
    assert "repeats the last one" in report


def test_tick_with_nothing_new_requests_nothing(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one())
    assert len(pipeline.sync()) == 1

    assert pipeline.sync() == []
    assert pipeline.query("select count(*) from ingest.uploads") == [(1,)]


def test_rejected_student_keeps_their_roster(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    files = day_one()
    files["students.csv"] = files["students.csv"].replace("2016-05-06", "2016-05-06 00:00")
    pipeline.upload(LEA, files, day=2)

    pipeline.sync()

    assert pipeline.query("select student_id from roster.students order by 1") == [
        ("S1",),
        ("S2",),
        ("S3",),
    ]
    assert pipeline.query("select count(*) from roster.enrollments") == [(3,)]
    assert pipeline.query(
        "select file, line, \"column\", value from quality.rejections where level = 'row'"
        " order by file"
    ) == [
        ("enrollments.csv", 3, "student_id", "S2"),
        ("students.csv", 3, "birth_date", "2016-05-06 00:00"),
    ]
    report = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]
    assert "spreadsheet re-saves" in report


def test_upload_missing_a_file_is_rejected_and_roster_kept(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    files = day_one()
    del files["enrollments.csv"]
    pipeline.upload(LEA, files, day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads order by received_at") == [
        ("applied",),
        ("rejected",),
    ]
    assert pipeline.query("select count(*) from roster.enrollments") == [(3,)]
    assert pipeline.query(
        "select file, rule, level from quality.rejections where level = 'upload'"
    ) == [("enrollments.csv", "required file is missing", "upload")]
    report = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]
    assert "Rejected: nothing was applied" in report
    evaluation = pipeline.check("upload_rejections", "upload_accepted")
    assert evaluation.passed is False
    assert evaluation.metadata["faults"].value == ["enrollments.csv: required file is missing"]


def test_no_step_output_is_stored_in_dagster_storage(pipeline: Pipeline) -> None:
    """Steps pass tables in memory: the instance's storage never holds students' records
    (the archive and warehouse are the only copies, both owner-only)."""
    pipeline.upload(LEA, day_one())

    assert [r.success for r in pipeline.sync()] == [True]

    students = list(csv.DictReader(io.StringIO(day_one()["students.csv"])))
    names = {row[c].encode() for row in students for c in ("first_name", "last_name")}
    # Under Dagster's default fs_io_manager this finds the pickled frames of four assets.
    stored = [p for p in Path(pipeline.instance.storage_directory()).rglob("*") if p.is_file()]
    assert [p for p in stored if any(name in p.read_bytes() for name in names)] == []


def test_a_sync_makes_one_ssh_connection_per_step_that_uses_sftp(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    """The sensor's listing, raw_upload (listing, six downloads, moving the files) and
    sync_report (two files) each share one connection: a handshake costs more than reading
    a small LEA's files."""
    pipeline.upload(LEA, day_one())
    before = sftp_server.connections_made

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert sftp_server.connections_made - before == 3


def test_district_level_staff_with_a_blank_campus_get_an_account(pipeline: Pipeline) -> None:
    files = day_one()
    files["staff.csv"] += "A1,Rosa,Diaz,rosa.diaz@example.org,\n"
    pipeline.upload(LEA, files)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select staff_id, campus_id from roster.staff order by 1") == [
        ("A1", None),
        ("T1", "101912001"),
        ("T2", "101912002"),
    ]
    assert pipeline.query("select username, status from roster.accounts where staff_id = 'A1'") == [
        ("rosa.diaz@example.org", "active")
    ]
    assert pipeline.query("select count(*) from quality.rejections where level = 'row'") == [(0,)]
    assert pipeline.check("applied_roster", "referential_integrity").passed
