"""The opt-in forkserver run launcher (rostering_pipeline/contrib/forkserver_launcher.py).

It is built on Dagster internals: these tests fail loudly when Dagster is not the exact
version it was written against, or when a private name it uses is gone, and run it under a
real daemon (deploy/dagster.yaml plus deploy/forkserver_launcher.yaml) so its undocumented
parts (the run process's `pid` engine event, forkserver bookkeeping) are exercised."""

from __future__ import annotations

import importlib
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rostering_pipeline.contrib import forkserver_launcher as fl
from rostering_pipeline.contrib.forkserver_launcher import FAILPOINT_ENV
from rostering_pipeline_tests.conftest import REPO, Pipeline
from rostering_pipeline_tests.daemon import running_daemon
from rostering_pipeline_tests.operations.test_daemon import (
    _assert_applied_exactly_once,
    _env,
    _every_upload_applied,
    _leas,
    _put_uploads,
    _run_waiting_in_its_first_step,
)

SNIPPET = yaml.safe_load((REPO / "deploy" / "forkserver_launcher.yaml").read_text())


def test_dagster_is_the_version_the_launcher_was_written_for() -> None:
    assert dg.__version__ == fl.WRITTEN_FOR_DAGSTER, (
        f"Dagster is {dg.__version__}, the forkserver launcher was written against "
        f"{fl.WRITTEN_FOR_DAGSTER} and uses its private modules. Before bumping "
        "WRITTEN_FOR_DAGSTER: compare DefaultRunLauncher, `dagster api execute_run`, the run "
        "process's pid engine event and PRIVATE_SYMBOLS with the new version, and run this "
        "file; or leave the launcher off (it is opt-in: README 'Run launcher')."
    )


@pytest.mark.parametrize("symbol", fl.PRIVATE_SYMBOLS)
def test_each_private_name_the_launcher_uses_still_exists(symbol: str) -> None:
    module, _, name = symbol.partition(":")
    assert hasattr(importlib.import_module(module), name), (
        f"{symbol} is gone from this Dagster/Python: the forkserver launcher needs updating"
    )


def test_the_opt_in_snippet_makes_it_the_instance_s_launcher(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert "run_launcher" not in config  # off by default: Dagster's own launcher
    with dg.DagsterInstance.local_temp(str(tmp_path), overrides={**config, **SNIPPET}) as instance:
        assert type(instance.run_launcher) is fl.ForkserverRunLauncher


@pytest.mark.daemon
def test_run_forks_from_the_warm_worker_and_terminates_cleanly(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    with running_daemon(
        tmp_path / "dagster_home", _env(pipeline), instance_overrides=SNIPPET
    ) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        launcher = daemon.instance.run_launcher
        pid, _ = launcher._run_process(run.run_id)
        assert pid is not None  # the run process's pid engine event is still read
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent_command = Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ")
        assert b"multiprocessing.forkserver" in parent_command, parent_command
        assert run.tags[fl.FORKED_TAG] == str(pid)  # the process the launcher forked

        assert launcher.terminate(run.run_id)  # as the UI's Terminate button does
        daemon.wait_for(
            "the run canceled",
            lambda: (
                daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
            ),
            timeout=60,
            interval=0.2,
        )
        daemon.wait_for(
            "the run's process gone", lambda: not fl.process_alive(pid, time.time()), timeout=30
        )
        held.close()
        assert not launcher.terminate(run.run_id)
    assert run.tags["lea_id"] == lea
    assert "ready" in pipeline.inbox(lea) and "students.csv" in pipeline.inbox(lea)


@pytest.mark.daemon
def test_killed_forked_run_fails_at_once_and_dagster_retries_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    students = _put_uploads(pipeline, tmp_path, [_leas(1)[0]])
    with running_daemon(
        tmp_path / "dagster_home", _env(pipeline), instance_overrides=SNIPPET
    ) as daemon:
        run, held = _run_waiting_in_its_first_step(daemon, pipeline)
        os.kill(int(run.tags[fl.FORKED_TAG]), signal.SIGKILL)
        daemon.wait_for(
            "the run failed",
            lambda: daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            timeout=10,
            interval=0.2,
        )
        failure = " ".join(
            e.message
            for e in daemon.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        )
        held.close()
        daemon.wait_for(
            "the upload applied by Dagster's retry",
            lambda: _every_upload_applied(daemon, pipeline, students),
            timeout=180,
            interval=1,
        )
        runs = daemon.runs()

    assert "ended with exit code -9 before the run finished" in failure, failure
    assert len(runs) == 2 and any(r.parent_run_id == run.run_id for r in runs)
    _assert_applied_exactly_once(pipeline, students)


@pytest.mark.daemon
def test_run_process_that_dies_before_it_starts_fails_its_run_and_loses_no_file(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _put_uploads(pipeline, tmp_path, [lea := _leas(1)[0]])
    env = {**_env(pipeline), FAILPOINT_ENV: "run_process.start:kill"}  # as a broken install
    with running_daemon(tmp_path / "dagster_home", env, instance_overrides=SNIPPET) as daemon:
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
        pid = int(run.tags[fl.FORKED_TAG])

    # Failed at launch with the process's exit code, not after the 60 s start timeout.
    assert any(
        f"The run's process (pid {pid}) ended before it started (exit code 137)" in m
        for m in errors
    ), errors
    assert not fl.process_alive(pid, time.time())
    assert run.tags["lea_id"] == lea
    assert "ready" in pipeline.inbox(lea) and "students.csv" in pipeline.inbox(lea)
