"""A real Dagster daemon for tests: `dagster-daemon run` over the repository's workspace.yaml,
with its own DAGSTER_HOME holding a copy of deploy/dagster.yaml (queued run coordinator,
per-LEA run limit) and the ROSTERING_* environment of the test's servers.

The daemon launches runs with deploy/dagster.yaml's run launcher (Dagster's own: each run a
process its code server starts), exactly as in production, so tests see real DuckDB lock
contention between run processes, and process crashes. It is started in its own session and
always killed as a process group (daemon, code server and run processes together), so a
test can never leave one behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

REPO = Path(__file__).resolve().parent.parent
#: The runs of the job that syncs an upload.
SYNC_RUNS = dg.RunsFilter(job_name="sync_upload")
INSTANCE_TEMPLATE = REPO / "deploy" / "dagster.yaml"
DAEMON = Path(sys.executable).parent / "dagster-daemon"
T = TypeVar("T")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Daemon:
    """One DAGSTER_HOME and the daemon process serving it (restartable)."""

    home: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _instance: dg.DagsterInstance | None = field(default=None, repr=False)

    @property
    def instance(self) -> dg.DagsterInstance:
        """The same instance the daemon uses (its run and event storage in DAGSTER_HOME)."""
        if self._instance is None:
            self._instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))
        return self._instance

    def start(self) -> None:
        assert self.process is None, "daemon already running"
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n==== daemon start {self.starts} ====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [str(DAEMON), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL the daemon's whole process group: daemon, code server, run workers."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def runs(self) -> list[dg.DagsterRun]:
        """The sync runs (not the status board's refresh runs, which its sensor starts too)."""
        return [r.dagster_run for r in self.instance.get_run_records(SYNC_RUNS)]

    def wait_for(
        self,
        what: str,
        probe: Callable[[], T | None],
        *,
        timeout: float,
        interval: float = 1.0,
    ) -> T:
        """Poll `probe` until it returns something truthy; fail with the daemon's log tail
        after `timeout` seconds or if the daemon died."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if self.process is not None and not self.alive():
                raise AssertionError(f"daemon exited while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; runs: "
                    f"{sorted((r.tags.get('lea_id', '-'), r.status.value) for r in self.runs())}\n"
                    f"daemon log:\n{self.log_tail()}"
                )
            time.sleep(interval)


def run_processes(daemon: Daemon) -> list[int]:
    """The run processes alive in the daemon's session: those Dagster's code server started
    (multiprocessing "spawn"), as seen in /proc."""
    assert daemon.process is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        # fields: state, ppid, pgrp, session, …
        if int(fields[3]) == daemon.process.pid and fields[0] != "Z" and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


@contextmanager
def running_daemon(
    home: Path,
    rostering_env: dict[str, str],
    *,
    instance_overrides: dict[str, Any] | None = None,
    start: bool = True,
    template: Path = INSTANCE_TEMPLATE,
) -> Iterator[Daemon]:
    """A daemon over a fresh DAGSTER_HOME; killed (as a process group) on the way out.

    `instance_overrides` is merged into the copy of `template` (deploy/dagster.yaml, or the
    Postgres profile's deploy/postgres/dagster.yaml), e.g. shorter run monitoring timeouts so
    a test need not wait out production's."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(template.read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(_merge(config, instance_overrides or {})))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ROSTERING_", "DAGSTER_"))},
        **rostering_env,
        "DAGSTER_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    daemon = Daemon(home, env, home / "daemon.log")
    try:
        if start:
            daemon.start()
        yield daemon
    finally:
        daemon.kill()
        if daemon._instance is not None:
            daemon._instance.dispose()
