"""`rostering demo` and `rostering ui`: the sample LEAs served from a loopback SFTP server,
synced into data/demo/, and the Dagster UI on the same data."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from rostering_pipeline.cli import DEMO, REPO, instance_home, load_defs, say, shown
from rostering_pipeline.runner import sync_once
from rostering_pipeline.summary import print_summary
from rostering_pipeline.warehouse import WarehouseResource

from .embedded_sftp import EmbeddedSftpServer

SAMPLES = REPO / "data" / "sample_uploads"


def server_environment(root: Path, server: EmbeddedSftpServer) -> dict[str, str]:
    """The ROSTERING_* configuration a deployment would set, pointing at an embedded SFTP
    server and at a warehouse and archive under `root` (the demo, the UI, benchmarks)."""
    known_hosts = root / "known_hosts"
    known_hosts.write_text(server.host_key_line + "\n")
    return {
        "ROSTERING_SFTP_HOST": server.host,
        "ROSTERING_SFTP_PORT": str(server.port),
        "ROSTERING_SFTP_USER": server.username,
        "ROSTERING_SFTP_PASSWORD": server.password or "",
        "ROSTERING_SFTP_KNOWN_HOSTS": str(known_hosts),
        "ROSTERING_WAREHOUSE": str(root / "warehouse.duckdb"),
        "ROSTERING_ARCHIVE": str(root / "archive"),
    }


def demo_environment(root: Path, server: EmbeddedSftpServer) -> dict[str, str]:
    """The demo's configuration: its server and files, and its own Dagster instance."""
    return {
        **server_environment(root, server),
        "DAGSTER_HOME": str(instance_home(root / "dagster_home")),
    }


def demo() -> int:
    """The main job on the embedded defaults: samples in, rosters applied, reports out."""
    if DEMO.exists():
        say(f"Starting over: removing the previous demo in {shown(DEMO)}/")
        shutil.rmtree(DEMO)
    sftp_root = DEMO / "sftp"
    shutil.copytree(SAMPLES, sftp_root, ignore=shutil.ignore_patterns("README.md"))
    for lea in sorted(p for p in sftp_root.iterdir() if p.is_dir()):
        (lea / "outbox").mkdir(exist_ok=True)
        (lea / "processed").mkdir(exist_ok=True)
    with EmbeddedSftpServer(sftp_root) as server:
        os.environ.update(demo_environment(DEMO, server))
        say(
            f"SFTP server on {server.host}:{server.port} serving the sample LEAs in "
            f"{shown(sftp_root)}/"
        )
        with dg.DagsterInstance.get() as instance:
            runs = sync_once(
                load_defs(), instance, cursor_path=DEMO / "sync_cursor.json", progress=say
            )
    print_summary(WarehouseResource(path=str(DEMO / "warehouse.duckdb")), runs, say)
    say("")
    say(f"Sync reports: {shown(sftp_root)}/<lea_id>/outbox/")
    say("Open the Dagster UI on the same data:  ./run ui   (then http://127.0.0.1:3000)")
    return 0 if runs and all(r.success for r in runs) else 1


#: Signals that stop `rostering ui`: Ctrl-C, `kill`, and a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How long dagster dev (webserver, daemon, code servers, runs) gets to stop before it is killed.
UI_STOP_GRACE_SECONDS = 20


#: `dagster dev` says at every start that `dg dev` supersedes it (dg is a development tool,
#: not a dependency of a deployment). Its services log at WARNING (--log-level above): not two
#: INFO lines per sensor tick every 5 s, but every warning and error.
UI_IGNORED_WARNING = "ignore:Function `dev_command` is superseded"


class _Stop(Exception):
    """A stop signal arrived."""


def ui_command(port: int) -> int:
    """`dagster dev` on the demo deployment, with the demo's SFTP server running beside it.

    dagster dev runs in a process group of its own, so that a stop reaches all of it (webserver,
    daemon, code servers, runs) once, from here: SIGINT, SIGTERM or SIGHUP to this process stops
    the group (SIGKILL after UI_STOP_GRACE_SECONDS), then the SFTP server."""
    sftp_root = DEMO / "sftp"
    if not sftp_root.exists():
        say("Run the demo first: ./run demo")
        return 1
    try:
        with _stopped_by_signals(), EmbeddedSftpServer(sftp_root) as server:
            env = {**os.environ, **demo_environment(DEMO, server)}
            env["PYTHONWARNINGS"] = ",".join(
                w for w in (os.environ.get("PYTHONWARNINGS"), UI_IGNORED_WARNING) if w
            )
            command = [
                sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
                "-h", "127.0.0.1", "-p", str(port), "--log-level", "warning",
            ]  # fmt: skip
            say(f"SFTP server on {server.host}:{server.port} serving {shown(sftp_root)}/")
            say(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it)")
            process = None
            try:
                process = subprocess.Popen(command, env=env, cwd=REPO, process_group=0)
                return process.wait()
            finally:
                if process is not None:
                    _stop_process_group(process)
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        say("Dagster UI and the demo's SFTP server stopped.")


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Turn the stop signals into _Stop while the block runs, whatever this process inherited.

    A script's `rostering ui &` starts it with SIGINT ignored, and a process ignoring SIGINT
    passes that on to dagster dev, which then ignores SIGTERM too (it handles both alike).
    Handling SIGINT here means dagster dev starts with the default. SIGHUP stays ignored when
    it was (nohup)."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return  # already stopping: a second Ctrl-C must not cut the clean-up short
        stopping = True
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        if not (sig == signal.SIGHUP and previous[sig] == signal.SIG_IGN):
            signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to every process of dagster dev's group; SIGKILL to what is left after the grace
    period. Returns once none of the group runs (or a bounded time after the SIGKILL)."""
    for sig, grace in ((signal.SIGTERM, UI_STOP_GRACE_SECONDS), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            if process.returncode is not None and not group_members(process.pid):
                return
            time.sleep(0.2)


def group_members(group: int) -> list[int]:
    """Processes of the process group still running (zombies waiting to be reaped aside)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
