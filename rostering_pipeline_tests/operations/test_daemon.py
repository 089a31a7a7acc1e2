"""The pipeline under a real `dagster-daemon` with deploy/dagster.yaml: the sensor, the queued
run coordinator with its limits, Dagster's own run launcher, run monitoring and run retries;
a run terminated as the UI would, a run process killed, and a daemon killed while runs are in
flight. Every complete upload ends applied exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rostering_demo.generator import LeaSpec
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.daemon import REPO, SYNC_RUNS, Daemon, run_processes, running_daemon
from rostering_pipeline_tests.faults import generated_files

pytestmark = pytest.mark.daemon

FAILED_OR_DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                  dg.DagsterRunStatus.CANCELED)  # fmt: skip


def _env(pipeline: Pipeline) -> dict[str, str]:
    return {**pipeline.env, "ROSTERING_SENSOR_INTERVAL_SECONDS": "5"}


def _leas(n: int) -> list[str]:
    return [f"{300001 + 37 * i:06d}" for i in range(n)]


def _put_uploads(pipeline: Pipeline, tmp_path: Path, leas: list[str]) -> dict[str, int]:
    """Each LEA's generated day-one upload in its inbox; returns its number of students."""
    students = {}
    for lea in leas:
        files = generated_files(tmp_path, LeaSpec(lea, students=30))
        pipeline.upload(lea, files)
        students[lea] = files["students.csv"].count(b"\n") - 1
    return students


def _query(pipeline: Pipeline, sql: str) -> list[tuple] | None:
    """A read of the warehouse, or None while a run holds it for writing or before a run has
    created its tables (a test's own connection creates an empty file)."""
    if not pipeline.warehouse.exists():
        return None
    try:
        return pipeline.query(sql)
    except (duckdb.IOException, duckdb.CatalogException):
        return None


def _most_at_once(runs: list[dg.RunRecord]) -> int:
    edges = sorted(
        [(r.start_time, 1) for r in runs if r.start_time]
        + [(r.end_time, -1) for r in runs if r.end_time]
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _assert_applied_exactly_once(pipeline: Pipeline, students: dict[str, int]) -> None:
    assert pipeline.query("select lea_id, status from ingest.uploads order by 1") == [
        (lea, "applied") for lea in sorted(students)
    ]
    assert dict(pipeline.query("select lea_id, count(*) from roster.students group by 1")) == (
        students
    )
    # Exactly once: every student was added by one change, never twice.
    assert (
        dict(
            pipeline.query(
                "select lea_id, count(*) from roster.changes where entity = 'students'"
                " and change = 'add' group by 1"
            )
        )
        == students
    )


def test_twenty_lea_runs_launched_at_once_all_succeed(pipeline: Pipeline, tmp_path: Path) -> None:
    """No run fails on the warehouse's lock or any step. A run that could not be launched
    (on an overloaded machine the code server's start of a run process can exceed Dagster's
    60 s launch deadline) is failed by the queue and retried by Dagster: every upload is
    still applied exactly once, by a run of its own LEA that succeeded."""
    students = _put_uploads(pipeline, tmp_path, leas := _leas(20))

    most_queued = 0

    def finished() -> bool:
        nonlocal most_queued
        runs = daemon.runs()
        most_queued = max(most_queued, sum(r.status == dg.DagsterRunStatus.QUEUED for r in runs))
        return _every_upload_applied(daemon, pipeline, students)

    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        # A bound, not a speed claim: on 2 shared cores under other suites' load, each run's
        # fresh process (Dagster's launcher) and steps take 13–65 s, four at a time.
        daemon.wait_for("every upload applied", finished, timeout=900, interval=3)
        records = list(daemon.instance.get_run_records(SYNC_RUNS))
        step_trouble = {
            r.dagster_run.tags["lea_id"]: [
                e.message
                for e in daemon.instance.all_logs(
                    r.dagster_run.run_id,
                    of_type={
                        dg.DagsterEventType.STEP_FAILURE,
                        dg.DagsterEventType.STEP_UP_FOR_RETRY,
                    },
                )
            ]
            for r in records
        }

    succeeded = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    failed = [r.dagster_run for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    assert sorted(r.dagster_run.tags["lea_id"] for r in succeeded) == leas
    retried = {r.dagster_run.parent_run_id for r in records}
    assert all(run.run_id in retried for run in failed), failed  # each failure retried
    assert {r.dagster_run.tags.get("dagster/sensor_name") for r in records} == {"lea_inbox_sensor"}
    assert all(not trouble for trouble in step_trouble.values()), step_trouble  # no lock failures
    assert most_queued >= 10  # requested together, held in the queue by the coordinator
    assert _most_at_once(records) <= 4  # deploy/dagster.yaml's max_concurrent_runs
    _assert_applied_exactly_once(pipeline, students)


def test_run_terminated_as_the_ui_does_is_canceled_and_not_retried(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        [pid] = run_processes(daemon)
        launcher = daemon.instance.run_launcher

        # As the UI's Terminate button does, from another process than the daemon.
        assert launcher.terminate(run.run_id)
        daemon.wait_for(
            "the run canceled",
            lambda: (
                daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
            ),
            timeout=60,
            interval=0.2,
        )
        daemon.wait_for("the run's process gone", lambda: not _alive(pid), timeout=30)
        held.close()
        assert not launcher.terminate(run.run_id)  # a finished run is not terminated again
        time.sleep(12)  # two sensor ticks and retry-daemon passes: nothing starts it again
        runs = daemon.runs()
    assert run.tags["lea_id"] == lea
    assert [r.run_id for r in runs] == [run.run_id]
    # Nothing lost: the canceled run stopped before taking the upload, which waits in the
    # inbox for an operator's re-execution (a canceled upload is not retried automatically).
    assert "ready" in pipeline.inbox(lea) and "students.csv" in pipeline.inbox(lea)


def test_killed_run_process_fails_its_run_at_once_and_the_upload_is_applied_again(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    students = _put_uploads(pipeline, tmp_path, [_leas(1)[0]])
    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        [pid] = run_processes(daemon)
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
        # Failed by the code server watching its run processes, well before run monitoring.
        daemon.wait_for(
            "the run failed",
            lambda: daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            timeout=10,
            interval=0.2,
        )
        engine_events = " ".join(
            e.message
            for e in daemon.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        )
        held.close()
        daemon.wait_for(
            "the upload applied by Dagster's retry of the run",
            lambda: _every_upload_applied(daemon, pipeline, students),
            timeout=180,
            interval=1,
        )
        runs = daemon.runs()

    assert "was terminated by signal 9 (SIGKILL)" in engine_events, engine_events
    assert len(runs) == 2
    retry = next(r for r in runs if r.run_id != run.run_id)
    assert retry.parent_run_id == run.run_id and retry.tags["lea_id"] == run.tags["lea_id"]
    _assert_applied_exactly_once(pipeline, students)


def test_a_run_launched_by_hand_waits_for_the_lea_s_sensor_run(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Launchpad and backfill runs carry no lea_id tag, only the partition's: the one-run-per-
    LEA limit must hold for them too (issue 16: a Launchpad run and a sensor run of one LEA
    ran at once and overwrote the LEA's report)."""
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        sensor_run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        launched = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-w",
             str(REPO / "workspace.yaml"), "-j", "sync_upload", "--tags",
             json.dumps({"dagster/partition": lea})],
            env=daemon.env, capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stderr[-2000:]
        by_hand = daemon.wait_for(
            "the run launched by hand",
            lambda: next((r for r in daemon.runs() if "lea_id" not in r.tags), None),
            timeout=30,
            interval=0.2,
        )
        time.sleep(5)  # five dequeue intervals: a free slot would have started it by now
        waiting = daemon.instance.get_run_by_id(by_hand.run_id).status
        held.close()
        daemon.wait_for(
            "both runs finished",
            lambda: all(r.is_finished for r in daemon.runs()),
            timeout=180,
            interval=1,
        )
        records = daemon.instance.get_run_records(SYNC_RUNS)

    assert sensor_run.tags["dagster/partition"] == lea
    assert waiting == dg.DagsterRunStatus.QUEUED
    assert _most_at_once(records) == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _run_waiting_in_its_first_step(
    daemon: Daemon, pipeline: Pipeline
) -> tuple[dg.DagsterRun, duckdb.DuckDBPyConnection]:
    """The sensor's first run, kept waiting for DuckDB's lock in its first step by the
    warehouse connection returned with it (taken as soon as the run is requested: the run
    process takes over a second to start)."""
    daemon.wait_for("the sensor's run request", daemon.runs, timeout=120, interval=0.05)
    held = daemon.wait_for("the warehouse lock", _hold_warehouse(pipeline), timeout=30)
    run = daemon.wait_for(
        "the run in its first step",
        lambda: next((r for r in daemon.runs() if r.status == dg.DagsterRunStatus.STARTED), None),
        timeout=120,
        interval=0.2,
    )
    return run, held


def _hold_warehouse(pipeline: Pipeline) -> Callable[[], duckdb.DuckDBPyConnection | None]:
    def attempt() -> duckdb.DuckDBPyConnection | None:
        try:
            return duckdb.connect(str(pipeline.warehouse))
        except duckdb.IOException:
            return None  # the sensor has it for a moment

    return attempt


def test_killed_daemon_with_runs_in_flight_recovers_every_upload(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    students = _put_uploads(pipeline, tmp_path, _leas(6))
    # Production's limits, shortened: a run whose host went down is failed once it has run
    # longer than max_runtime_seconds (a healthy run here takes seconds, tens under load).
    monitoring = {
        "run_monitoring": {
            "start_timeout_seconds": 60,
            "max_runtime_seconds": 45,
            "poll_interval_seconds": 2,
            "free_slots_after_run_end_seconds": 1,
        },
    }

    with running_daemon(
        tmp_path / "dagster_home", _env(pipeline), instance_overrides=monitoring
    ) as daemon:
        daemon.wait_for(
            "a run in flight",
            lambda: [r for r in daemon.runs() if r.status == dg.DagsterRunStatus.STARTED],
            timeout=120,
            interval=0.2,
        )
        time.sleep(1.5)  # let it get into its steps
        daemon.kill()
        at_kill = {r.run_id: r.status for r in daemon.runs()}
        assert dg.DagsterRunStatus.STARTED in at_kill.values()
        assert any(s not in FAILED_OR_DONE for s in at_kill.values())

        daemon.start()
        daemon.wait_for(  # a bound: dead runs wait out the timeouts above, then retry
            "every upload applied",
            lambda: _every_upload_applied(daemon, pipeline, students),
            timeout=600,
            interval=2,
        )
        runs = {r.run_id: r for r in daemon.runs()}

    dead = [run_id for run_id, status in at_kill.items() if status == dg.DagsterRunStatus.STARTED]
    assert all(runs[run_id].status == dg.DagsterRunStatus.FAILURE for run_id in dead)
    # Each dead run was retried by Dagster (a run of the same upload, its child).
    retried = {r.parent_run_id for r in runs.values() if r.parent_run_id}
    assert set(dead) <= retried, (dead, retried)
    _assert_applied_exactly_once(pipeline, students)


def _every_upload_applied(daemon: Daemon, pipeline: Pipeline, students: dict[str, int]) -> bool:
    if any(r.status not in FAILED_OR_DONE for r in daemon.runs()):
        return False
    rows = _query(pipeline, "select lea_id, status from ingest.uploads")
    return rows is not None and sorted(rows) == [(lea, "applied") for lea in sorted(students)]
