"""`rostering demo` and `rostering ui`: the sample LEAs served from a loopback SFTP server,
synced into data/demo/, and the Dagster UI on the same data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from rostering_pipeline.cli import DEMO, REPO, instance_home, load_defs, say
from rostering_pipeline.runner import sync_once
from rostering_pipeline.summary import print_summary

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
        say(f"Starting over: removing the previous demo in {DEMO.relative_to(REPO)}/")
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
            f"{sftp_root.relative_to(REPO)}/"
        )
        with dg.DagsterInstance.get() as instance:
            runs = sync_once(
                load_defs(), instance, cursor_path=DEMO / "sync_cursor.json", progress=say
            )
    print_summary(DEMO / "warehouse.duckdb", runs, say)
    say("")
    say(f"Sync reports: {DEMO.relative_to(REPO)}/sftp/<lea_id>/outbox/")
    say("Open the Dagster UI on the same data:  ./run ui   (then http://127.0.0.1:3000)")
    return 0 if runs and all(r.success for r in runs) else 1


def ui_command(port: int) -> int:
    """`dagster dev` on the demo deployment, with the demo's SFTP server running beside it."""
    sftp_root = DEMO / "sftp"
    if not sftp_root.exists():
        say("Run the demo first: ./run demo")
        return 1
    with EmbeddedSftpServer(sftp_root) as server:
        env = {**os.environ, **demo_environment(DEMO, server)}
        command = [
            sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(port),
        ]  # fmt: skip
        say(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops it)")
        process = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True)
        try:
            return process.wait()
        except KeyboardInterrupt:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            return 0
