"""The pipeline under a real `dagster-daemon`: the sensor, the queued run coordinator with
deploy/dagster.yaml's limits, run processes forked by LocalRunLauncher, a run terminated as
the UI would, and a daemon killed while runs are in flight. Every complete upload ends
applied exactly once."""

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
from rostering_pipeline.failpoints import FAILPOINT_ENV
from rostering_pipeline.run_launcher import FORKED_TAG, process_alive
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.daemon import REPO, Daemon, running_daemon
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
    """A read of the warehouse, or None while a run holds it for writing."""
    if not pipeline.warehouse.exists():
        return None
    try:
        return pipeline.query(sql)
    except duckdb.IOException:
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
    students = _put_uploads(pipeline, tmp_path, leas := _leas(20))

    most_queued = 0

    def finished() -> bool:
        nonlocal most_queued
        runs = daemon.runs()
        most_queued = max(most_queued, sum(r.status == dg.DagsterRunStatus.QUEUED for r in runs))
        return len([r for r in runs if r.status in FAILED_OR_DONE]) >= 20

    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        daemon.wait_for("20 finished runs", finished, timeout=480, interval=3)
        records = list(daemon.instance.get_run_records())
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

    assert sorted(r.dagster_run.tags["lea_id"] for r in records) == leas
    assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
    assert {r.dagster_run.tags.get("dagster/sensor_name") for r in records} == {"lea_inbox_sensor"}
    assert all(not trouble for trouble in step_trouble.values()), step_trouble  # no lock failures
    assert most_queued >= 10  # requested together, held in the queue by the coordinator
    assert _most_at_once(records) <= 4  # deploy/dagster.yaml's max_concurrent_runs
    _assert_applied_exactly_once(pipeline, students)


def test_run_forks_from_the_warm_worker_and_terminates_cleanly(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        launcher = daemon.instance.run_launcher
        pid, _ = launcher._run_process(run.run_id)
        assert pid is not None
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent_command = Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ")
        assert b"multiprocessing.forkserver" in parent_command, parent_command
        assert run.tags[FORKED_TAG] == str(pid)  # the process the launcher forked

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
        daemon.wait_for(
            "the run's process gone", lambda: not process_alive(pid, time.time()), timeout=30
        )
        held.close()
        assert not launcher.terminate(run.run_id)  # a finished run is not terminated again
    assert run.tags["lea_id"] == lea
    # Nothing lost: the canceled run stopped before taking the upload, which waits in the
    # inbox for an operator's re-execution (a canceled upload is not retried automatically).
    assert "ready" in pipeline.inbox(lea) and "students.csv" in pipeline.inbox(lea)


def test_killed_run_process_fails_its_run_at_once_and_the_upload_is_applied_again(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    students = _put_uploads(pipeline, tmp_path, [_leas(1)[0]])
    with running_daemon(tmp_path / "dagster_home", _env(pipeline)) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        os.kill(int(run.tags[FORKED_TAG]), signal.SIGKILL)  # as the out-of-memory killer would
        # Failed by the launcher watching its process, well before run monitoring's 30 s poll.
        daemon.wait_for(
            "the run failed",
            lambda: daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            timeout=10,
            interval=0.2,
        )
        failure = _run_failure(daemon, run.run_id)
        held.close()
        daemon.wait_for(
            "the upload applied by the sensor's next request",
            lambda: _every_upload_applied(daemon, pipeline, students),
            timeout=180,
            interval=1,
        )
        attempts = len(daemon.runs())

    assert "ended with exit code -9 before the run finished" in failure, failure
    assert attempts == 2
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
        records = daemon.instance.get_run_records()

    assert sensor_run.tags["dagster/partition"] == lea
    assert waiting == dg.DagsterRunStatus.QUEUED
    assert _most_at_once(records) == 1


def test_run_process_that_dies_before_it_starts_fails_its_run_and_loses_no_file(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    env = {**_env(pipeline), FAILPOINT_ENV: "run_process.start:kill"}  # as a broken install
    with running_daemon(tmp_path / "dagster_home", env) as daemon:
        run = daemon.wait_for(
            "the run failed",
            lambda: next(
                (r for r in daemon.runs() if r.status == dg.DagsterRunStatus.FAILURE), None
            ),
            timeout=120,
            interval=0.2,
        )
        errors = [
            e.dagster_event.engine_event_data.error.message
            for e in daemon.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if e.dagster_event.engine_event_data.error is not None
        ]
        pid = int(run.tags[FORKED_TAG])

    # Failed at launch with the process's exit code, not after the 60 s start timeout.
    assert any(
        f"The run's process (pid {pid}) ended before it started (exit code 137)" in m
        for m in errors
    ), errors
    assert not process_alive(pid, time.time())
    assert run.tags["lea_id"] == lea
    # Nothing was read: the upload waits in the inbox for the next run.
    assert "ready" in pipeline.inbox(lea) and "students.csv" in pipeline.inbox(lea)


def _run_failure(daemon: Daemon, run_id: str) -> str:
    """What Dagster recorded as the run's failure (its RUN_FAILURE messages)."""
    return " ".join(
        e.message for e in daemon.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    )


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
    monitoring = {
        "run_monitoring": {
            "start_timeout_seconds": 60,
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
        daemon.wait_for(
            "every upload applied",
            lambda: _every_upload_applied(daemon, pipeline, students),
            timeout=240,
            interval=2,
        )
        after = {r.run_id: r.status for r in daemon.runs()}
        failures = {
            run_id: _run_failure(daemon, run_id)
            for run_id, status in at_kill.items()
            if status == dg.DagsterRunStatus.STARTED
        }

    dead = [run_id for run_id, status in at_kill.items() if status == dg.DagsterRunStatus.STARTED]
    assert all(after[run_id] == dg.DagsterRunStatus.FAILURE for run_id in dead)
    # Found dead by LocalRunLauncher's health check, not after the maximum run time.
    assert all("the run's process (pid" in failures[run_id] for run_id in dead), failures
    assert len(after) > len(at_kill)  # the sensor requested the uploads of dead runs again
    _assert_applied_exactly_once(pipeline, students)


def _every_upload_applied(daemon: Daemon, pipeline: Pipeline, students: dict[str, int]) -> bool:
    if any(r.status not in FAILED_OR_DONE for r in daemon.runs()):
        return False
    rows = _query(pipeline, "select lea_id, status from ingest.uploads")
    return rows is not None and sorted(rows) == [(lea, "applied") for lea in sorted(students)]
