"""An upload is dated when the pipeline saw it complete, never by the LEA's file times
(DESIGN invariant 3), and files that come back with the same names, sizes and times are a
new upload, not a repeat. Real clock skew through the SFTP server's mtimes."""

from __future__ import annotations

import os
from pathlib import Path

from rostering_pipeline_tests.conftest import DAY, DAY_ONE, Pipeline
from rostering_pipeline_tests.uploads import day_one, day_two

LEA = "101912"
YEAR = 365 * DAY


def _stamp_inbox(pipeline: Pipeline, mtime: int) -> None:
    """Set every inbox file's mtime, as a client with a wrong clock (or none) would."""
    for path in (pipeline.sftp_root / LEA / "inbox").iterdir():
        os.utime(path, (mtime, mtime))


def _uploads(pipeline: Pipeline) -> list[tuple]:
    return pipeline.query(
        "select strftime(received_at, '%Y-%m-%d'), status from ingest.uploads order by received_at"
    )


def test_a_client_clock_a_year_ahead_does_not_supersede_the_next_uploads(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    _stamp_inbox(pipeline, DAY_ONE + YEAR)  # WinSCP keeps the client's (wrong) times
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _uploads(pipeline) == [("2026-09-01", "applied"), ("2026-09-02", "applied")]
    assert ("S4",) in pipeline.query("select student_id from roster.students")
    reports = sorted(n for n in pipeline.outbox(LEA) if n.startswith("sync_report_"))
    assert reports == ["sync_report_20260901T120000Z.md", "sync_report_20260902T120000Z.md"]


def test_files_with_mtime_zero_are_dated_by_their_arrival(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    _stamp_inbox(pipeline, 0)  # 1970-01-01: every birth date would be "after the upload"

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _uploads(pipeline) == [("2026-09-01", "applied")]
    assert pipeline.query("select count(*) from quality.rejections") == [(0,)]
    assert pipeline.query("select count(*) from roster.students") == [(3,)]


def test_new_content_with_the_same_names_sizes_and_mtimes_is_a_new_upload(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    changed = day_one()
    changed["students.csv"] = changed["students.csv"].replace(",04,", ",05,")  # same size
    assert len(changed["students.csv"]) == len(day_one()["students.csv"])
    pipeline.upload(LEA, changed, day=1)  # the same mtimes as day one's files
    pipeline.day = 2  # arriving the next day

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert _uploads(pipeline) == [("2026-09-01", "applied"), ("2026-09-02", "applied")]
    assert pipeline.query("select student_id, grade from roster.students order by 1") == [
        ("S1", "05"),
        ("S2", "05"),
        ("S3", "07"),
    ]
    assert pipeline.inbox(LEA) == []
    assert len([n for n in pipeline.outbox(LEA) if n.startswith("sync_report_")]) == 2
    assert pipeline.sync() == []  # and it is not requested again


def test_the_sensor_cursor_of_the_previous_version_is_read(pipeline: Pipeline) -> None:
    old = '{"101912": {"key": "101912-0000000000000000", "since": 1}}'
    Path(pipeline.cursor).write_text(old)
    pipeline.upload(LEA, day_one(), day=1)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
