"""Smoke test: the OpenSSH sshd started by `./run test` serves SFTP with host key checking."""

from __future__ import annotations

import os
import stat

import paramiko
import pytest

from rostering_pipeline_tests.sshd import sshd_from_env

LEA_ID = "101912"
TIMEOUT_S = 10


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.mark.sshd
def test_sshd_serves_sftp_with_host_key_checking(tmp_path):
    server = sshd_from_env()
    if server is None:
        message = "no sshd: ROSTERING_TEST_SSHD_* not set (run the suite with ./run test)"
        if _in_ci():
            pytest.fail(f"CI requires the sshd test to run; {message}")
        pytest.skip(message)

    inbox = f"/{LEA_ID}/inbox"
    local_inbox = server.make_remote_dir(inbox)
    payload = b"student_id,first_name,last_name,grade\n1001,Ada,Lovelace,07\n"
    upload = tmp_path / "upload.csv"
    upload.write_bytes(payload)

    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            server.host,
            port=server.port,
            username=server.user,
            key_filename=str(server.key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=TIMEOUT_S,
            banner_timeout=TIMEOUT_S,
            auth_timeout=TIMEOUT_S,
            channel_timeout=TIMEOUT_S,
        )
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(TIMEOUT_S)
        try:
            remote = f"{inbox}/enrollment.csv"
            sftp.put(str(upload), remote)

            entries = {e.filename: e for e in sftp.listdir_attr(inbox)}
            assert "enrollment.csv" in entries
            assert stat.S_ISREG(entries["enrollment.csv"].st_mode)
            assert entries["enrollment.csv"].st_size == len(payload)

            download = tmp_path / "download.csv"
            sftp.get(remote, str(download))
            assert download.read_bytes() == payload
        finally:
            sftp.close()
    finally:
        client.close()

    # The server's "/" is the chroot directory on the local filesystem.
    assert (local_inbox / "enrollment.csv").read_bytes() == payload
