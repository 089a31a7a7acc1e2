"""OPT-IN, OFF BY DEFAULT. Dagster's local run launcher, with run processes forked from a warm
worker, and a health check so run monitoring sees a dead run at once.

Fence. This module is an instance plugin, not part of the code location, and it reaches into
Dagster's private modules (every `dagster._*` import below), `multiprocessing.process._children`
and the `pid` metadata of the engine event a run process logs when it starts, none of which
Dagster documents or keeps stable. It was written against exactly WRITTEN_FOR_DAGSTER;
rostering_pipeline_tests/operations/test_forkserver_launcher.py fails on any other version (and runs
runs through it under a real daemon): re-read those internals, re-run the tests, then bump
the pin. To opt in, see README "Run launcher"; deploy/dagster.yaml uses Dagster's own
DefaultRunLauncher, which every other test runs on.

Start-up. DefaultRunLauncher asks the code server to start each run in a fresh Python process
(multiprocessing "spawn"), which spends ~1.5 s of CPU importing Dagster and paramiko before the
run does anything: on a 2-core machine syncing hundreds of small LEAs that is half the work.
This launcher forks each run from a multiprocessing "forkserver" that has imported only those
libraries (single-threaded imports; no thread is running when it forks). The run process then
does what `dagster api execute_run` does (the entry point of Dagster's container launchers):
it imports this code location afresh, so code changes reach the next run exactly as with a
spawned process. Libraries are not reloaded until the daemon restarts, as for the daemon
itself: restart it after changing dependencies. A run of a code location the workspace does
not start itself (a remote gRPC server) or that uses another Python goes through the code
server as before.

Health. DefaultRunLauncher cannot tell when a run's process has died (a crash, an
out-of-memory kill, the daemon's host restarting). Such a run stays "started" until
`max_runtime_seconds`, holding its LEA's run slot. The run's own event log names its process
id, so the monitoring daemon can ask the operating system whether the process is still there
and fail the run within one poll; Dagster's run retries then re-execute it. A forked
run whose process exits before its run has finished (even before the run started) is failed
at once by the launching process, with the exit code.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path

from dagster import DagsterEventType, DagsterRunStatus
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.remote_origin import (
    CodeLocationOrigin,
    GrpcServerCodeLocationOrigin,
    ManagedGrpcPythonEnvCodeLocationOrigin,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import serialize_value

from rostering_pipeline.run_tags import FORKED_TAG

#: A test's way to make a forked run process die as it starts (as a broken install would):
#: `ROSTERING_FAILPOINT=run_process.start:kill`. The test cannot reach that process from its
#: own; unset in every real deployment. Kept inside this fenced, opt-in module.
FAILPOINT_ENV = "ROSTERING_FAILPOINT"

#: The Dagster version whose internals this module was written and tested against.
WRITTEN_FOR_DAGSTER = "1.13.27"
#: The private names it uses ("module:attribute"), checked by its test on every run.
PRIVATE_SYMBOLS = (
    "dagster._core.errors:DagsterLaunchFailedError",
    "dagster._core.instance.ref:InstanceRef",
    "dagster._core.launcher:DefaultRunLauncher",
    "dagster._core.launcher:LaunchRunContext",
    "dagster._core.launcher.base:CheckRunHealthResult",
    "dagster._core.launcher.base:WorkerStatus",
    "dagster._core.remote_origin:CodeLocationOrigin",
    "dagster._core.remote_origin:GrpcServerCodeLocationOrigin",
    "dagster._core.remote_origin:ManagedGrpcPythonEnvCodeLocationOrigin",
    "dagster._core.storage.dagster_run:DagsterRun",
    "dagster._grpc.types:ExecuteRunArgs",
    "dagster._serdes:serialize_value",
    "dagster._cli.api:execute_run_command",
    "multiprocessing.process:_children",
)

# Imported once by the forkserver, with the modules of the instance's storage classes (for
# SQLite: SQLAlchemy and alembic) and what the `dagster-daemon` script imports (multiprocessing
# runs the launching process's main script again in each run process). Only libraries whose
# import starts no thread: polars, pyarrow and duckdb start threads on import, and a fork
# copies no threads (a lock one of them held would stay held in the child), so each run imports
# those itself. A name that no longer imports is skipped by the forkserver: it costs speed,
# never correctness.
PRELOADED = ("dagster", "dagster._cli.api", "dagster._daemon.cli", "paramiko")
STORAGE_DATA = (
    "storage_data",
    "run_storage_data",
    "event_storage_data",
    "schedule_storage_data",
    "compute_logs_data",
)
#: How long launch_run waits for a forked run process to say it is running.
START_TIMEOUT_SECONDS = 60.0


class ForkserverRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose runs fork from a warm worker and are checked by run monitoring."""

    def __init__(self, inst_data=None):
        super().__init__(inst_data=inst_data)
        self._lock = threading.Lock()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        remote = run.remote_job_origin
        location = remote.repository_origin.code_location_origin if remote else None
        if (
            origin is None
            or origin.repository_origin.executable_path != sys.executable
            or not _started_here(location)
        ):
            super().launch_run(context)
            return
        ref = self._instance.get_ref()
        args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=ref)
        ready, ready_in_child = multiprocessing.Pipe(duplex=False)
        with self._lock:  # the forkserver's first start, and Process bookkeeping
            worker = _forkserver(_preloaded(ref)).Process(
                target=execute_run,
                args=(serialize_value(args), ready_in_child),
                name=f"dagster-run-{run.run_id}",
            )
            worker.start()
            # Not a child the daemon's exit waits for: a run outlives its launcher, as a run
            # of the code server does (multiprocessing keeps no other reference to it).
            multiprocessing.process._children.discard(worker)  # noqa: SLF001
        ready_in_child.close()
        self._instance.add_run_tags(run.run_id, {FORKED_TAG: str(worker.pid)})
        self._run_ids.add(run.run_id)
        try:
            if not wait([ready], START_TIMEOUT_SECONDS):  # a message, or EOF if it ended
                worker.kill()
                raise DagsterLaunchFailedError(
                    f"The run's process (pid {worker.pid}) did not start within "
                    f"{START_TIMEOUT_SECONDS:.0f} s and was stopped."
                )
            ready.recv()
        except EOFError:
            worker.join(5)
            raise DagsterLaunchFailedError(
                f"The run's process (pid {worker.pid}) ended before it started (exit code "
                f"{worker.exitcode}); its output is in the daemon's log."
            ) from None
        finally:
            ready.close()
        threading.Thread(
            target=self._watch, args=(run.run_id, worker), name="run-watch", daemon=True
        ).start()

    def _watch(self, run_id: str, worker: multiprocessing.process.BaseProcess) -> None:
        """Wait for the run's process to end; a run it left unfinished is failed at once."""
        worker.join()
        code = worker.exitcode
        worker.close()
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        if run.status == DagsterRunStatus.CANCELING:
            self._instance.report_run_canceled(run, f"The run's process ended (exit code {code}).")
            return
        self._instance.report_run_failed(
            run,
            f"The run's process ended with exit code {code} before the run finished (killed, "
            "out of memory, or a crash; see the daemon's log). Dagster's run retries re-execute "
            "it.",
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or FORKED_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid, reported_at = self._run_process(run_id)
        if pid is None:  # not reported yet: the process the launcher started, moments ago
            pid, reported_at = int(run.tags[FORKED_TAG]), time.time()
        if not process_alive(pid, reported_at):
            self._instance.report_run_canceled(run, "The run's process was no longer running.")
            return True
        # The run process turns the interrupt into a cancellation of its step and run.
        os.kill(pid, signal.SIGINT)
        return True

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
            "Dagster's run retries re-execute it.",
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


def execute_run(serialized_args: str, ready: multiprocessing.connection.Connection) -> None:
    """A run process's body: Dagster's `dagster api execute_run` with these arguments."""
    from dagster._cli.api import execute_run_command

    # As the code location sets on import (definitions.py): the run's event log and compute
    # logs, written before the code location loads, are readable by their owner only.
    os.umask(0o077)
    if os.environ.get(FAILPOINT_ENV) == "run_process.start:kill":
        os._exit(137)
    ready.send(os.getpid())
    ready.close()
    execute_run_command.main(args=[serialized_args], prog_name="dagster api execute_run")


def _started_here(location: CodeLocationOrigin | None) -> bool:
    """Whether the code location's server runs on this machine: one the workspace starts, or
    a gRPC server on loopback or a local socket (`dagster dev` starts one for the webserver
    and daemon to share). A server elsewhere keeps launching its own runs."""
    if isinstance(location, ManagedGrpcPythonEnvCodeLocationOrigin):
        return True
    if isinstance(location, GrpcServerCodeLocationOrigin):
        return bool(location.socket) or location.host in ("localhost", "127.0.0.1", "::1")
    return False


def _forkserver(preload: list[str]) -> multiprocessing.context.BaseContext:
    """The forkserver context; its server starts, importing `preload`, on the first run."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def _preloaded(ref: InstanceRef) -> list[str]:
    """PRELOADED and the modules of the instance's storage classes when they are Dagster's
    (a storage class of this project would be imported once and stay stale)."""
    modules = [getattr(ref, name).module_name for name in STORAGE_DATA if getattr(ref, name)]
    return list(dict.fromkeys([*PRELOADED, *(m for m in modules if m.startswith("dagster"))]))
