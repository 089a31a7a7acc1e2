"""Faults on the way in and out: a dropped connection, a file still being written, a wrong
host key or login, a server that is down, an outbox the pipeline may not write. Each against
the real loopback SFTP server, DuckDB file and Dagster instance: the pipeline keeps working,
loses nothing, and says what to fix."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import asyncssh
import pytest

from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_demo.generator import LeaSpec
from rostering_pipeline.sftp import SftpError
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.fault_points import archive_disk_full
from rostering_pipeline_tests.faults import (
    assert_archive_whole,
    execute,
    failure_messages,
    generated_files,
    sensor_requests,
)
from rostering_pipeline_tests.faulty_sftp import FaultySftpServer
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
SPEC = LeaSpec(LEA, students=400)


def _roster_size(pipeline: Pipeline) -> int:
    return pipeline.query("select count(*) from roster.students")[0][0]


def test_connection_dropped_mid_download_is_retried_and_applied_once(
    pipeline: Pipeline,
    sftp_server: FaultySftpServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = generated_files(tmp_path, SPEC)
    assert len(files["students.csv"]) > 16_384
    pipeline.upload(LEA, files)
    sftp_server.cut_after_bytes, sftp_server.cuts_left = 8_192, 1

    with caplog.at_level(logging.WARNING, logger="rostering_pipeline.sftp"):
        runs = pipeline.sync()

    assert sftp_server.cuts_left == 0, "the fault never fired"
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert [r.success for r in runs] == [True]
    archived = assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert sorted(p.read_bytes() for p in archived) == sorted(files.values())
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert _roster_size(pipeline) == files["students.csv"].count(b"\n") - 1
    assert pipeline.query(
        "select count(*) from roster.changes where entity = 'students' and change = 'add'"
    ) == [(_roster_size(pipeline),)]


def test_download_failing_every_attempt_fails_the_run_and_the_re_execution_applies_once(
    pipeline: Pipeline,
    sftp_server: FaultySftpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROSTERING_SFTP_RETRIES", "1")
    monkeypatch.setenv("ROSTERING_SFTP_RETRY_BACKOFF_SECONDS", "0.05")
    files = generated_files(tmp_path, SPEC)
    pipeline.upload(LEA, files)
    sftp_server.cut_after_bytes = 8_192  # every connection, every attempt

    [failed] = pipeline.sync()

    assert not failed.success
    message = failure_messages(pipeline, failed.run_id)
    assert f"LEA {LEA}: Could not download /{LEA}/inbox/" in message
    assert "after 2 attempts" in message and "Check that the server is up" in message
    assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert pipeline.query("select count(*) from ingest.uploads") == [(0,)]
    assert pipeline.inbox(LEA) == sorted([*files, "ready"])  # still there to retry
    assert not pipeline.will_retry(failed.run_id)  # a step failed: not retried at once…
    assert pipeline.sync() == []  # …nor requested again by the sensor

    sftp_server.cut_after_bytes = None
    retried = pipeline.reexecute(failed.run_id)  # the operator's, once the server is fixed

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query("select count(*) from roster.changes where entity = 'students'") == [
        (_roster_size(pipeline),)
    ]
    assert pipeline.sync() == []  # nothing left to do, nothing applied twice


def test_file_still_growing_is_not_read_until_the_inbox_is_quiet(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROSTERING_QUIET_PERIOD_SECONDS", "2")
    files = generated_files(tmp_path, SPEC)
    inbox = pipeline.sftp_root / LEA / "inbox"
    inbox.mkdir(parents=True)
    for name, content in files.items():
        if name != "students.csv":
            (inbox / name).write_bytes(content)
    students = files["students.csv"]
    chunks = [students[i : i + len(students) // 5 + 1] for i in range(0, len(students), 
              len(students) // 5 + 1)]  # fmt: skip
    finished = threading.Event()

    def lea_writes_slowly() -> None:
        with (inbox / "students.csv").open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                out.flush()
                time.sleep(0.7)
        finished.set()

    writer = threading.Thread(target=lea_writes_slowly, daemon=True)
    writer.start()
    runs = []
    ticks_while_writing = 0
    deadline = time.monotonic() + 30
    while not runs and time.monotonic() < deadline:
        writing = not finished.is_set()
        runs = pipeline.sync()
        if writing:
            ticks_while_writing += 1
            assert runs == [], "a run started while students.csv was still being written"
        time.sleep(0.3)
    writer.join(timeout=5)

    assert ticks_while_writing >= 3
    assert [r.success for r in runs] == [True]
    archived = {
        p.read_bytes() for p in assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    }
    assert students in archived  # the whole file, never a prefix of it
    assert not any(students.startswith(a) and a != students for a in archived)
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]


def test_wrong_host_key_is_refused_naming_the_host(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    pipeline.upload(LEA, day_one())
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    impostor = f"[{sftp_server.host}]:{sftp_server.port} {' '.join(other_key.split()[:2])}"
    Path(pipeline.env["ROSTERING_SFTP_KNOWN_HOSTS"]).write_text(impostor + "\n")

    with pytest.raises(
        SftpError, match=rf"\[127\.0\.0\.1\]:{sftp_server.port} presented a host key"
    ):
        pipeline.sync()

    assert not Path(pipeline.env["ROSTERING_ARCHIVE"]).exists()  # nothing downloaded
    assert pipeline.inbox(LEA) == sorted([*day_one(), "ready"])


def test_host_key_changed_between_sensor_and_run_fails_the_run_with_the_fix(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    pipeline.upload(LEA, day_one())
    [request] = sensor_requests(pipeline).run_requests
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    Path(pipeline.env["ROSTERING_SFTP_KNOWN_HOSTS"]).write_text(
        f"[{sftp_server.host}]:{sftp_server.port} {' '.join(other_key.split()[:2])}\n"
    )

    result = execute(pipeline, request)

    assert not result.success
    message = failure_messages(pipeline, result.run_id)
    assert f"LEA {LEA}:" in message and "presented a host key that does not match" in message
    assert "update ROSTERING_SFTP_KNOWN_HOSTS" in message
    assert not Path(pipeline.env["ROSTERING_ARCHIVE"]).exists()
    assert not pipeline.warehouse.exists() or pipeline.query(
        "select count(*) from ingest.uploads"
    ) == [(0,)]


def test_wrong_password_fails_the_run_and_the_upload_stays_retryable(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    before = pipeline.query("select * from roster.students order by student_id")
    files = day_one()
    files["students.csv"] += "S9,Ada,Lim,2016-01-02,04,101912001\n"
    pipeline.upload(LEA, files, day=2)
    [request] = sensor_requests(pipeline).run_requests
    monkeypatch.setenv("ROSTERING_SFTP_PASSWORD", "not-the-password")

    result = execute(pipeline, request)

    assert not result.success
    message = failure_messages(pipeline, result.run_id)
    assert f"LEA {LEA}:" in message and "refused the login of user 'rostering'" in message
    assert "Check ROSTERING_SFTP_USER and ROSTERING_SFTP_PASSWORD" in message
    assert "not-the-password" not in message
    assert pipeline.query("select * from roster.students order by student_id") == before
    assert "students.csv" in pipeline.inbox(LEA)
    assert not pipeline.will_retry(result.run_id)  # no use retrying before the fix

    monkeypatch.setenv("ROSTERING_SFTP_PASSWORD", pipeline.env["ROSTERING_SFTP_PASSWORD"])
    retried = pipeline.reexecute(result.run_id)

    assert retried.success
    assert pipeline.query("select status from ingest.uploads order by received_at") == [
        ("applied",),
        ("applied",),
    ]
    assert pipeline.query("select key from roster.changes where upload_id in (select upload_id"
                          " from ingest.uploads where received_at = (select max(received_at)"
                          " from ingest.uploads))") == [("S9",)]  # fmt: skip


def test_server_down_fails_the_run_and_the_upload_is_applied_when_it_is_back(
    pipeline: Pipeline, sftp_server: FaultySftpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSTERING_SFTP_RETRIES", "1")
    monkeypatch.setenv("ROSTERING_SFTP_RETRY_BACKOFF_SECONDS", "0.05")
    pipeline.upload(LEA, day_one())
    [request] = sensor_requests(pipeline).run_requests
    sftp_server.stop()

    result = execute(pipeline, request)

    assert not result.success
    message = failure_messages(pipeline, result.run_id)
    assert (
        f"LEA {LEA}: Could not connect to 127.0.0.1:{sftp_server.port} after 2 attempts" in message
    )
    assert "Check that the server is up and reachable" in message
    assert not pipeline.warehouse.exists() or pipeline.query(
        "select count(*) from ingest.uploads"
    ) == [(0,)]
    assert not pipeline.will_retry(result.run_id)

    with EmbeddedSftpServer(pipeline.sftp_root) as back:
        monkeypatch.setenv("ROSTERING_SFTP_PORT", str(back.port))
        Path(pipeline.env["ROSTERING_SFTP_KNOWN_HOSTS"]).write_text(back.host_key_line + "\n")
        retried = pipeline.reexecute(result.run_id)

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert _roster_size(pipeline) == 3


def test_outbox_permission_denied_fails_the_run_and_the_re_execution_delivers_the_report(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    pipeline.upload(LEA, day_one())
    sftp_server.deny_writes = {f"/{LEA}/outbox"}

    [failed] = pipeline.sync()

    assert not failed.success
    message = failure_messages(pipeline, failed.run_id)
    assert f"Permission denied: could not write /{LEA}/outbox/sync_report_" in message
    assert f"Give the pipeline's SFTP user 'rostering' write access to /{LEA}/outbox/" in message
    assert pipeline.outbox(LEA) == {}
    # The roster was applied before the report failed; the upload stays retryable.
    [(upload_id, status)] = pipeline.query("select upload_id, status from ingest.uploads")
    assert status == "applied"
    changes = pipeline.query("select count(*) from roster.changes")
    assert not pipeline.will_retry(failed.run_id)

    sftp_server.deny_writes = set()
    retried = pipeline.reexecute(failed.run_id)

    assert retried.success
    assert pipeline.instance.get_run_by_id(retried.run_id).tags["dagster/partition"] == LEA
    assert pipeline.query("select count(*) from roster.changes") == changes  # idempotent
    assert pipeline.query("select upload_id, status from ingest.uploads") == [
        (upload_id, "applied")
    ]
    report = next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))
    assert "**Applied**" in report
    assert pipeline.sync() == []  # delivered: nothing requested again


def test_file_changed_after_ready_is_not_read_and_the_settled_upload_is_applied(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, day_one())
    [request] = sensor_requests(pipeline).run_requests
    # The LEA put `ready` first and is still writing students.csv when the run starts.
    with (pipeline.sftp_root / LEA / "inbox" / "students.csv").open("a") as out:
        out.write("S9,Ada,Lim,2016-01-02,04,101912001\n")

    result = execute(pipeline, request)

    assert result.success  # the LEA still writing is not a fault of the pipeline
    assert not result.asset_materializations_for_node("raw_upload")
    assert not Path(pipeline.env["ROSTERING_ARCHIVE"]).exists()  # nothing was read
    assert not pipeline.warehouse.exists() or pipeline.query(
        "select count(*) from ingest.uploads"
    ) == [(0,)]
    assert pipeline.inbox(LEA) == sorted([*day_one(), "ready"])

    [settled] = pipeline.sync()

    assert settled.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert _roster_size(pipeline) == 4  # the whole file, with the row written last


#: Each LEA's five uploads: a generator day (or a repeat of the previous upload's files,
#: re-exported, or an upload that is rejected as a whole), delivered in this order.
SOAK_PLANS = (
    [("good", 1), ("good", 2), ("bad", "missing_file"), ("good", 3), ("repeat", None)],
    [("good", 1), ("repeat", None), ("good", 2), ("bad", "missing_required_column"), ("good", 3)],
    [("good", 1), ("good", 2), ("good", 3), ("good", 4), ("bad", "other_lea_campus")],
)


def test_soak_fifty_uploads_across_ten_leas_while_runs_are_in_progress(
    pipeline: Pipeline, sftp_server: FaultySftpServer, tmp_path: Path
) -> None:
    leas = [f"{400001 + 53 * i:06d}" for i in range(10)]
    deliveries: dict[str, list[tuple[str, dict[str, bytes]]]] = {}
    for i, lea in enumerate(leas):
        spec, plan, last_good, sent = LeaSpec(lea, students=20), SOAK_PLANS[i % 3], 1, []
        for kind, arg in plan:
            if kind == "good":
                files, last_good = generated_files(tmp_path, spec, day=int(arg)), int(arg)
            elif kind == "repeat":
                files = sent[-1][1]
            else:
                files = generated_files(tmp_path, spec, day=last_good, inject=(str(arg),))
            sent.append((kind, files))
        deliveries[lea] = sent
    # Three downloads are cut mid-file on the way (the SFTP resource retries them).
    sftp_server.cut_after_bytes, sftp_server.cuts_left = 1_024, 3
    delivered = {lea: 0 for lea in leas}
    done = threading.Event()

    def leas_upload_when_their_inbox_is_empty() -> None:
        """Each LEA sends its next upload as soon as its inbox shows the last one was picked
        up, i.e. while that upload's run is still validating and applying it."""
        while not done.is_set():
            for lea in leas:
                inbox = pipeline.sftp_root / lea / "inbox"
                if delivered[lea] < 5 and (not inbox.exists() or not any(inbox.iterdir())):
                    n = delivered[lea]
                    pipeline.upload(lea, deliveries[lea][n][1], day=n + 1)
                    delivered[lea] += 1
            time.sleep(0.05)

    writer = threading.Thread(target=leas_upload_when_their_inbox_is_empty, daemon=True)
    writer.start()
    runs = []
    deadline = time.monotonic() + 420
    try:
        while time.monotonic() < deadline:
            new = pipeline.sync()
            runs += new
            if (
                not new
                and all(n == 5 for n in delivered.values())
                and not any(pipeline.inbox(lea) for lea in leas)
            ):
                break
            time.sleep(0.1)
    finally:
        done.set()
        writer.join(timeout=5)

    assert all(n == 5 for n in delivered.values()), f"not every upload was sent: {delivered}"
    assert sftp_server.cuts_left == 0  # the injected connection faults happened
    assert [r for r in runs if not r.success] == []  # no run failed, faults included
    statuses = pipeline.query(
        "select lea_id, status from ingest.uploads order by lea_id, received_at"
    )
    assert len(statuses) == 50
    for i, lea in enumerate(leas):
        expected = [
            {"good": "applied", "repeat": "duplicate", "bad": "rejected"}[k]
            for k, _ in SOAK_PLANS[i % 3]
        ]
        assert [s for lea_id, s in statuses if lea_id == lea] == expected, lea
        last_good = next(f for k, f in reversed(deliveries[lea]) if k == "good")
        want = {line.split(b",")[0].decode() for line in last_good["students.csv"].splitlines()[1:]}
        have = {r[0] for r in pipeline.query(
            "select student_id from roster.students where lea_id = ?", [lea])}  # fmt: skip
        assert have == want, f"LEA {lea}: roster is not its last good upload"
        enrollments = {tuple(line.decode().split(",")[:2]) for line in
                       last_good["enrollments.csv"].splitlines()[1:]}  # fmt: skip
        assert set(pipeline.query(
            "select class_id, student_id from roster.enrollments where lea_id = ?", [lea]
        )) == enrollments  # fmt: skip


def test_processed_folder_not_writable_fails_the_run_and_the_re_execution_applies_once(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    pipeline.upload(LEA, day_one())
    sftp_server.deny_writes = {f"/{LEA}/processed"}

    [failed] = pipeline.sync()

    assert not failed.success
    message = failure_messages(pipeline, failed.run_id)
    assert (
        f"LEA {LEA}: Permission denied: could not move files from /{LEA}/inbox/ to /{LEA}/processed/"
        in message
    )
    assert f"write access to /{LEA}/inbox/ and /{LEA}/processed/" in message
    # Received and archived, not applied; the files wait in the inbox.
    assert pipeline.query("select status from ingest.uploads") == [("received",)]
    assert len(assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))) == len(day_one())
    assert pipeline.query("select count(*) from roster.students") == [(0,)]
    assert pipeline.inbox(LEA) == sorted([*day_one(), "ready"])
    assert not pipeline.will_retry(failed.run_id)

    sftp_server.deny_writes = set()
    retried = pipeline.reexecute(failed.run_id)

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query("select count(*) from roster.changes where entity = 'students'") == [(3,)]
    assert pipeline.inbox(LEA) == []
    assert pipeline.sync() == []


def test_unreadable_inbox_file_fails_the_run_naming_it_and_nothing_is_read(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    pipeline.upload(LEA, day_one())
    sftp_server.deny_reads = {f"/{LEA}/inbox/students.csv"}

    [failed] = pipeline.sync()

    assert not failed.success
    message = failure_messages(pipeline, failed.run_id)
    assert f"Permission denied: could not download /{LEA}/inbox/students.csv" in message
    assert f"read access to /{LEA}/inbox/students.csv" in message
    assert pipeline.query("select count(*) from ingest.uploads") == [(0,)]
    assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))
    assert pipeline.inbox(LEA) == sorted([*day_one(), "ready"])
    assert not pipeline.will_retry(failed.run_id)

    sftp_server.deny_reads = set()
    retried = pipeline.reexecute(failed.run_id)

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]


@pytest.mark.parametrize("moment", ["before_open", "after_open"])
def test_file_deleted_by_the_lea_mid_download_ends_the_run_cleanly_and_is_picked_up_again(
    pipeline: Pipeline, sftp_server: FaultySftpServer, moment: str
) -> None:
    """The LEA deletes students.csv after the run listed the inbox: as the download opens it
    (the open fails), or while it is being read (the check after the transfer fails)."""
    pipeline.upload(LEA, day_one())
    [request] = sensor_requests(pipeline).run_requests
    students = pipeline.sftp_root / LEA / "inbox" / "students.csv"

    def lea_deletes_students_csv(path: str) -> None:
        if path == f"/{LEA}/inbox/students.csv":
            students.unlink(missing_ok=True)

    setattr(sftp_server, moment, lea_deletes_students_csv)

    result = execute(pipeline, request)

    assert result.success  # the LEA changing its inbox is not a fault of the pipeline
    assert not result.asset_materializations_for_node("raw_upload")
    warnings = [
        e.message for e in pipeline.instance.all_logs(result.run_id) if e.level == logging.WARNING
    ]
    assert any(
        f"LEA {LEA}: students.csv changed or disappeared" in w and "picks the upload up again" in w
        for w in warnings
    ), warnings
    assert not pipeline.warehouse.exists() or pipeline.query(
        "select count(*) from ingest.uploads"
    ) == [(0,)]
    assert_archive_whole(Path(pipeline.env["ROSTERING_ARCHIVE"]))  # nothing left half-way
    assert pipeline.inbox(LEA) == sorted([*(set(day_one()) - {"students.csv"}), "ready"])

    setattr(sftp_server, moment, None)
    pipeline.upload(LEA, {"students.csv": day_one()["students.csv"]}, day=2)  # sent again
    [settled] = pipeline.sync()

    assert settled.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert _roster_size(pipeline) == 3


def test_an_upload_put_back_exactly_after_a_run_ended_unread_is_requested_again(
    pipeline: Pipeline, sftp_server: FaultySftpServer
) -> None:
    """A client that keeps timestamps (WinSCP, `sftp put -p`) sends the deleted file again
    with its old size and mtime: the listing is the one the first run ended unread on, and
    it must get a run of its own (under a new run key, which the daemon would launch)."""
    pipeline.upload(LEA, day_one())
    [request] = sensor_requests(pipeline).run_requests
    students = pipeline.sftp_root / LEA / "inbox" / "students.csv"
    sftp_server.before_open = lambda path: (
        students.unlink() if path.endswith("/students.csv") else None
    )
    assert execute(pipeline, request).success
    sftp_server.before_open = None
    pipeline.upload(LEA, {"students.csv": day_one()["students.csv"]})  # same bytes and mtime

    [again] = sensor_requests(pipeline).run_requests

    assert again.tags == request.tags  # the same upload…
    assert again.run_key != request.run_key  # …requested again
    [settled] = pipeline.sync()
    assert settled.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert _roster_size(pipeline) == 3


def test_a_full_archive_disk_fails_the_run_as_the_archives_problem_not_sftps(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """The archive's disk is full (ENOSPC on the write of a downloaded file): the run says
    so, with the path, the free space and what to do, and nothing is retried over SFTP."""
    pipeline.upload(LEA, day_one())
    with pytest.MonkeyPatch.context() as full_disk:
        archive_disk_full(full_disk)
        with caplog.at_level(logging.WARNING, logger="rostering_pipeline.sftp"):
            [failed] = pipeline.sync()

    assert not failed.success
    message = failure_messages(pipeline, failed.run_id)
    archive = Path(pipeline.env["ROSTERING_ARCHIVE"])
    assert f"LEA {LEA}: could not write " in message
    assert f"to the archive at {archive}, writing {archive}/.incoming/" in message
    assert "No space left on device" in message and "bytes free" in message
    assert "Free space on the archive's disk" in message
    assert "SFTP" not in message and "server" not in message
    assert not any("retrying" in r.getMessage() for r in caplog.records)  # not SFTP's fault
    assert pipeline.query("select count(*) from ingest.uploads") == [(0,)]
    assert_archive_whole(archive)  # nothing half-written left behind
    assert pipeline.inbox(LEA) == sorted([*day_one(), "ready"])

    assert not pipeline.will_retry(failed.run_id)

    retried = pipeline.reexecute(failed.run_id)  # the disk has room again

    assert retried.success
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
