"""The same round trip against OpenSSH's sshd on 127.0.0.1 (started by `./run test`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from rostering_pipeline_tests.conftest import Pipeline, pipeline_env
from rostering_pipeline_tests.sshd import SshdServer, sshd_from_env
from rostering_pipeline_tests.uploads import day_one, day_two

LEA = "101912"


@pytest.mark.sshd
def _sshd() -> SshdServer:
    """The sshd `./run test` started; a missing one fails in CI and skips elsewhere."""
    server = sshd_from_env()
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test: ./run test starts sshd and exports its details")
        pytest.skip("OpenSSH sshd is not running (./run test starts it)")
    return server


def _pipeline_env(
    server: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The pipeline's environment pointed at the sshd, with key auth (set for this test)."""
    env = pipeline_env(
        tmp_path,
        server.host,
        server.port,
        server.user,
        server.known_hosts_path.read_text().strip(),
    )
    env["ROSTERING_SFTP_KEY_FILE"] = str(server.key_path)
    monkeypatch.delenv("ROSTERING_SFTP_PASSWORD", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_round_trip_against_openssh_sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _sshd()
    lea_root = server.make_remote_dir(f"/{LEA}")
    for folder in ("inbox", "outbox", "processed"):
        server.make_remote_dir(f"/{LEA}/{folder}")
    env = _pipeline_env(server, tmp_path, monkeypatch)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            pipeline = Pipeline(tmp_path, server.root, instance, env)
            pipeline.upload(LEA, day_one(), day=1)
            assert [r.success for r in pipeline.sync()] == [True]
            pipeline.upload(LEA, day_two(), day=2)
            assert [r.success for r in pipeline.sync()] == [True]
            assert pipeline.sync() == []

            assert pipeline.query("select status from ingest.uploads order by received_at") == [
                ("applied",),
                ("applied",),
            ]
            assert pipeline.query("select student_id from roster.students order by 1") == [
                ("S1",),
                ("S3",),
                ("S4",),
            ]
            reports = [n for n in pipeline.outbox(LEA) if n.startswith("sync_report_")]
            assert len(reports) == 2
            assert pipeline.inbox(LEA) == []
    finally:
        shutil.rmtree(lea_root, ignore_errors=True)


@pytest.mark.sshd
def test_a_linked_inbox_is_refused_by_openssh_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSH's sftp-server follows a link inside a path like any server: `/A/inbox ->
    ../B/inbox` is refused by lstat before B's files are listed, read or moved."""
    server = _sshd()
    other = "227901"
    roots = [server.make_remote_dir(f"/{lea}") for lea in (LEA, other)]
    for folder in ("inbox", "outbox", "processed"):
        server.make_remote_dir(f"/{other}/{folder}")
    (roots[0] / "inbox").symlink_to(f"../{other}/inbox")
    env = _pipeline_env(server, tmp_path, monkeypatch)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            pipeline = Pipeline(tmp_path, server.root, instance, env)
            files = {n: t.replace(LEA, other) for n, t in day_one().items()}
            pipeline.upload(other, files, day=1)

            runs = {r.lea_id: r for r in pipeline.sync()}

            assert runs[other].success and not runs[LEA].success
            assert pipeline.query("select lea_id, status from ingest.uploads") == [
                (other, "applied")
            ]
            [upload] = os.listdir(roots[1] / "processed")
            assert sorted(os.listdir(roots[1] / "processed" / upload)) == sorted([*files, "ready"])
            assert (roots[0] / "inbox").is_symlink()
            assert not (roots[0] / "processed").exists()
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
