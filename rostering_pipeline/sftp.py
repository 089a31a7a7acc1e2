"""SFTP access to the LEAs' folders: one resource, host keys checked, transient faults retried."""

from __future__ import annotations

import base64
import io
import logging
import posixpath
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
import paramiko
from pydantic import Field

log = logging.getLogger(__name__)
LEA_FOLDER = re.compile(r"^\d{6}$")
T = TypeVar("T")
TRANSIENT = (socket.timeout, TimeoutError, ConnectionError, EOFError, paramiko.SSHException)


class SftpError(Exception):
    """An SFTP problem an operator must fix (host key, credentials, permissions)."""


@dataclass(frozen=True)
class RemoteFile:
    """A directory entry as the server reports it; mtime is the server's, in whole seconds."""

    name: str
    size: int
    mtime: int
    kind: str  # "file", "dir", "link" or "other"


class SftpResource(dg.ConfigurableResource):
    """The SFTP server where LEAs drop uploads and collect sync reports."""

    host: str = Field(description="SFTP server host name or address.")
    port: int = 22
    username: str
    password: str | None = Field(default=None, description="Password (set from an EnvVar).")
    private_key_path: str | None = Field(default=None, description="Private key file for auth.")
    known_hosts_path: str | None = Field(
        default=None, description="known_hosts file holding the server's host key."
    )
    host_key: str | None = Field(
        default=None, description="Pinned host key, 'ssh-ed25519 AAAA…' (instead of known_hosts)."
    )
    connect_timeout_seconds: float = 15.0
    io_timeout_seconds: float = 60.0
    retries: int = 3
    retry_backoff_seconds: float = 1.0

    @contextmanager
    def session(self) -> Iterator[paramiko.SFTPClient]:
        """A connected SFTP client; connecting retries transient faults with backoff."""
        client = self._retry(self._connect, what=f"connect to {self.host}:{self.port}")
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.io_timeout_seconds)
            yield sftp
        finally:
            client.close()

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        keys = client.get_host_keys()
        if self.host_key:
            kind, blob = self.host_key.split()[:2]
            keys.add(
                self._host_id(), kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
            )
        elif self.known_hosts_path:
            client.load_host_keys(self.known_hosts_path)
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                key_filename=self.private_key_path,
                timeout=self.connect_timeout_seconds,
                banner_timeout=self.connect_timeout_seconds,
                auth_timeout=self.connect_timeout_seconds,
                channel_timeout=self.connect_timeout_seconds,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise SftpError(
                f"SFTP server {self._host_id()} presented a host key that does not match the "
                "pinned or known_hosts key. Nothing was downloaded. If the server's key really "
                "changed, update ROSTERING_SFTP_KNOWN_HOSTS or ROSTERING_SFTP_HOST_KEY."
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise SftpError(
                f"SFTP server {self._host_id()} refused the login of user '{self.username}'. "
                "Check ROSTERING_SFTP_USER and ROSTERING_SFTP_PASSWORD or ROSTERING_SFTP_KEY_FILE."
            ) from None
        except paramiko.SSHException as error:
            client.close()
            if "not found in known_hosts" in str(error):
                raise SftpError(
                    f"SFTP server {self._host_id()} is not in the known_hosts file. Add its host "
                    "key to ROSTERING_SFTP_KNOWN_HOSTS (or pin it in ROSTERING_SFTP_HOST_KEY)."
                ) from None
            raise
        except Exception:
            client.close()
            raise
        return client

    def _host_id(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _retry(self, action: Callable[[], T], *, what: str) -> T:
        for attempt in range(self.retries + 1):
            try:
                return action()
            except (SftpError, PermissionError, FileNotFoundError):
                raise
            except (*TRANSIENT, OSError) as error:
                if attempt == self.retries:
                    raise SftpError(
                        f"Could not {what} after {self.retries + 1} attempts: {error}. "
                        "Check that the server is up and reachable; the upload stays in the "
                        "inbox and will be retried."
                    ) from error
                delay = self.retry_backoff_seconds * 2**attempt
                log.warning(
                    "SFTP %s failed (%s); retrying in %.1fs", what, type(error).__name__, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    # Listing -----------------------------------------------------------------------------

    def list_lea_folders(self) -> list[str]:
        with self.session() as sftp:
            return sorted(
                e.filename
                for e in sftp.listdir_attr("/")
                if LEA_FOLDER.match(e.filename) and stat.S_ISDIR(e.st_mode or 0)
            )

    def list_inboxes(self) -> dict[str, list[RemoteFile]]:
        """Every LEA folder's inbox in one connection (the sensor's whole tick)."""
        with self.session() as sftp:
            leas = sorted(
                e.filename
                for e in sftp.listdir_attr("/")
                if LEA_FOLDER.match(e.filename) and stat.S_ISDIR(e.st_mode or 0)
            )
            inboxes = {}
            for lea_id in leas:
                try:
                    inboxes[lea_id] = _entries(sftp, f"/{lea_id}/inbox")
                except FileNotFoundError:
                    continue
            return inboxes

    def list_dir(self, path: str) -> list[RemoteFile]:
        with self.session() as sftp:
            return _entries(sftp, path)

    # Transfers ---------------------------------------------------------------------------

    def download(self, remote_path: str, local_path: Path) -> RemoteFile:
        """Fetch one file with prefetch; returns the server's stat taken after the transfer,
        so the caller can tell whether it changed while being read."""

        def fetch() -> RemoteFile:
            with self.session() as sftp:
                with local_path.open("wb") as out:
                    sftp.getfo(remote_path, out, prefetch=True, max_concurrent_prefetch_requests=64)
                attrs = sftp.stat(remote_path)
                return RemoteFile(
                    posixpath.basename(remote_path),
                    attrs.st_size or 0,
                    int(attrs.st_mtime or 0),
                    "file",
                )

        return self._retry(fetch, what=f"download {remote_path}")

    def write_bytes(self, remote_path: str, data: bytes) -> None:
        """Write a file atomically: to a temporary name, then renamed into place."""

        def put() -> None:
            with self.session() as sftp:
                _makedirs(sftp, posixpath.dirname(remote_path))
                partial = remote_path + ".partial"
                sftp.putfo(io.BytesIO(data), partial, confirm=True)
                sftp.posix_rename(partial, remote_path)

        try:
            self._retry(put, what=f"write {remote_path}")
        except PermissionError:
            raise SftpError(
                f"Permission denied writing {remote_path}. Give the pipeline's SFTP user write "
                "access to that folder."
            ) from None

    def move_files(self, names: list[str], source_dir: str, target_dir: str) -> None:
        """Move files out of an inbox once archived (an empty inbox tells the LEA so)."""

        def move() -> None:
            with self.session() as sftp:
                _makedirs(sftp, target_dir)
                for name in names:
                    try:
                        sftp.posix_rename(f"{source_dir}/{name}", f"{target_dir}/{name}")
                    except FileNotFoundError:
                        continue  # already moved by an earlier attempt

        self._retry(move, what=f"move files to {target_dir}")


def _entries(sftp: paramiko.SFTPClient, path: str) -> list[RemoteFile]:
    entries = []
    for e in sftp.listdir_attr(path):
        mode = e.st_mode or 0
        kind = (
            "file"
            if stat.S_ISREG(mode)
            else "dir"
            if stat.S_ISDIR(mode)
            else "link"
            if stat.S_ISLNK(mode)
            else "other"
        )
        entries.append(RemoteFile(e.filename, e.st_size or 0, int(e.st_mtime or 0), kind))
    return sorted(entries, key=lambda f: f.name)


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = [p for p in path.split("/") if p]
    current = ""
    for part in parts:
        current += "/" + part
        try:
            sftp.stat(current)
        except FileNotFoundError:
            sftp.mkdir(current)
