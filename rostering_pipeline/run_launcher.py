"""Dagster's local run launcher, plus a health check so run monitoring sees a dead run at once.

DefaultRunLauncher starts each run as a process on this machine but cannot tell when that
process has died (a crash, an out-of-memory kill, the daemon's host restarting). Such a run
stays "started" until `max_runtime_seconds`, holding its LEA's run slot. The run's own
event log names its process id, so the monitoring daemon can ask the operating system
whether the process is still there and fail the run within one poll; lea_inbox_sensor then
requests its upload again.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose runs' processes are checked by run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid, reported_at = self._run_process(run.run_id)
        if pid is None:
            # Not started yet: run monitoring's start timeout covers that case.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run process reported yet")
        if process_alive(pid, reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} is running")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run's process (pid {pid}) is gone: it was killed or its machine restarted. "
            "lea_inbox_sensor requests the upload again.",
        )

    def _run_process(self, run_id: str) -> tuple[int | None, float]:
        """The process id the run last reported, and when it reported it."""
        events = self._instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        for event in reversed(events):
            data = event.dagster_event.engine_event_data if event.dagster_event else None
            pid = data.metadata.get("pid") if data and data.metadata else None
            if pid is not None and str(pid.value).isdigit():
                return int(str(pid.value)), event.timestamp
        return None, 0.0


def process_alive(pid: int, reported_at: float) -> bool:
    """Whether `pid` is the process that reported itself at `reported_at` and still runs.

    A process id can be reused; a process that started after the report is another one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = _process_start_time(pid)
    return started is None or started <= reported_at + 1.0


def _process_start_time(pid: int) -> float | None:
    """When a process started (Linux /proc), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
