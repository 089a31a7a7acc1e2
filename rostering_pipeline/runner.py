"""One sensor pass and the runs it asks for, in this process: `rostering sync` and the tests."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .defs.partitions import lea_partitions
from .run_tags import PROCESS_TAG

SENSOR = "lea_inbox_sensor"
JOB = "sync_upload"
#: Dagster's tag for a sensor run's run key (the daemon sets it on the runs it launches; the
#: runs `sync_once` executes in-process set it too: a run key that succeeded either way is
#: not run again).
RUN_KEY_TAG = "dagster/run_key"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
#: Retries of a run whose process died, on an instance without `run_retries` configured
#: (deploy/dagster.yaml sets the same number).
DEFAULT_MAX_RETRIES = 3
#: The terminal shows each step's INFO lines (progress), not Dagster's DEBUG event stream.
CONSOLE_AT_INFO = {"console": {"config": {"log_level": "INFO"}}}


@dataclass(frozen=True)
class SyncedRun:
    lea_id: str
    run_id: str
    success: bool
    seconds: float
    #: The upload the run took (a replay takes one an earlier run received), when it got that far.
    upload_id: str | None = None


def sync_once(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    cursor_path: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[SyncedRun]:
    """Evaluate the inbox sensor once and execute each requested run in-process.

    A run whose source key already succeeded is not run again, as the daemon's run-key
    de-duplication would do. A run an earlier pass left unfinished when its process was
    killed is marked failed and re-executed first, as Dagster's run monitoring and run
    retries do under the daemon.
    """
    runs = []
    for run_id in fail_runs_of_ended_processes(instance):
        progress(f"run {run_id[:8]} was left unfinished by a process that ended: marked failed")
        if _retries_left(instance, run_id):
            runs.append(reexecute(defs, instance, run_id, progress=progress))
    sensor = defs.resolve_sensor_def(SENSOR)
    cursor = cursor_path.read_text() if cursor_path and cursor_path.exists() else None
    resources = defs.resources or {}
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    if cursor_path is not None and result.cursor is not None:
        cursor_path.parent.mkdir(parents=True, exist_ok=True)
        cursor_path.write_text(result.cursor)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(lea_partitions.name, list(request.partition_keys))
    for request in result.run_requests or []:
        if _already_succeeded(instance, request.run_key):
            progress(f"LEA {request.partition_key}: upload already synced, skipped")
            continue
        progress(f"LEA {request.partition_key}: syncing upload…")
        runs.append(
            _execute(
                defs,
                instance,
                str(request.partition_key),
                request.run_config,
                {**request.tags, RUN_KEY_TAG: request.run_key or ""},
                progress,
            )
        )
    return runs


def reexecute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run_id: str,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> SyncedRun:
    """Re-execute a finished run with all its steps, in this process: what Dagster's run
    retries and the UI's "Re-execute all" launch (the run's config and own tags, in its run
    group), for `sync_once` and the tests, which have no daemon."""
    parent = instance.get_run_by_id(run_id)
    assert parent is not None, f"no run {run_id}"
    lea_id = parent.tags.get("dagster/partition", "?")
    progress(f"LEA {lea_id}: re-executing run {run_id[:8]}…")
    tags = {
        **{k: v for k, v in parent.tags.items() if not k.startswith("dagster/")},
        "dagster/parent_run_id": parent.run_id,
        "dagster/root_run_id": _root_of(parent),
    }
    return _execute(defs, instance, lea_id, parent.run_config, tags, progress)


def _execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lea_id: str,
    run_config: dict,
    tags: dict[str, str],
    progress: Callable[[str], None],
) -> SyncedRun:
    started = time.monotonic()
    outcome = defs.resolve_job_def(JOB).execute_in_process(
        run_config={**run_config, "loggers": CONSOLE_AT_INFO},
        instance=instance,
        partition_key=lea_id,
        tags={**tags, PROCESS_TAG: _this_process()},
        raise_on_error=False,
    )
    seconds = time.monotonic() - started
    progress(
        f"LEA {lea_id}: run {outcome.run_id[:8]} "
        f"{'succeeded' if outcome.success else 'FAILED'} in {seconds:.1f}s"
    )
    return SyncedRun(lea_id, outcome.run_id, outcome.success, seconds, _upload_of(outcome))


def _root_of(run: dg.DagsterRun) -> str:
    """The first run of the run's group (an in-process re-execution has it as a tag only)."""
    return run.tags.get("dagster/root_run_id") or run.root_run_id or run.run_id


def _retries_left(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run's group (the run and its re-executions) holds fewer retries than the
    instance's run_retries.max_retries (DEFAULT_MAX_RETRIES on an instance without them)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return False
    most = instance.run_retries_max_retries if instance.run_retries_enabled else DEFAULT_MAX_RETRIES
    _, group = instance.get_run_group(_root_of(run)) or ("", [run])
    return len(group) <= most


def _already_succeeded(instance: dg.DagsterInstance, key: str | None) -> bool:
    if not key:
        return False
    records = instance.get_run_records(
        dg.RunsFilter(tags={RUN_KEY_TAG: key}, statuses=[dg.DagsterRunStatus.SUCCESS]),
        limit=1,
    )
    return bool(records)


def fail_runs_of_ended_processes(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs whose process ended before them (killed, a power cut).

    Under the daemon, run monitoring does this; a run `sync_once` executed in-process would
    otherwise stay STARTED for ever, and the sensor retries only failed runs. Runs of another
    host are left alone: whether their process lives cannot be told from here."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=JOB, statuses=UNFINISHED)):
        tag = record.dagster_run.tags.get(PROCESS_TAG)
        if not tag or _process_lives(tag):
            continue
        instance.report_run_failed(
            record.dagster_run,
            f"The process that ran it ({tag}) ended before the run did (killed or crashed). "
            "Nothing was half-applied (the apply is one transaction); the upload is retried.",
        )
        failed.append(record.dagster_run.run_id)
    return failed


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _process_lives(tag: str) -> bool:
    host, pid, started = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    # The same pid with another start time is a new process that reused the number.
    return _start_time(int(pid)) == started


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _upload_of(outcome: dg.ExecuteInProcessResult) -> str | None:
    """The upload_id raw_upload reported, if it materialized (a refused upload does not)."""
    for event in outcome.get_asset_materialization_events():
        value = event.materialization.metadata.get("upload_id")
        if value is not None:
            return str(value.value)
    return None
