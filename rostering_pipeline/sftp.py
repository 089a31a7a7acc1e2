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
from typing import NoReturn, TypeVar

import dagster as dg
import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_NAME, CMD_OPENDIR, CMD_READDIR
from pydantic import Field, PrivateAttr

from rostering_pipeline.quiet_inboxes import QuietInboxes

log = logging.getLogger(__name__)
LEA_FOLDER = re.compile(r"^\d{6}$")
T = TypeVar("T")
TRANSIENT = (socket.timeout, TimeoutError, ConnectionError, EOFError, paramiko.SSHException)


class SftpError(Exception):
    """An SFTP problem an operator must fix (host key, credentials, permissions)."""


class FileTooLarge(SftpError):
    """A file grew past the size limit while it was being downloaded."""


class NotARealFolder(SftpError):
    """A folder the pipeline reads or writes (an LEA's folder, inbox/, processed/…,
    outbox/) is a symbolic link, or not a folder at all. A link is never followed: it could
    lead to another LEA's files, or put this LEA's files or report somewhere else."""

    def __init__(self, path: str, kind: str, target: str | None = None, mtime: int = 0) -> None:
        self.path, self.kind, self.target, self.mtime = path, kind, target, mtime
        if kind == "link":
            what = f"is a symbolic link{f' to {target}' if target else ''}, not a folder"
            fix = (
                "An operator must replace the link with a real folder: remove the link on the "
                f"SFTP server and create the folder {path} in its place"
            )
        else:
            what = "is not a folder"
            fix = f"An operator must replace it with a real folder {path} on the SFTP server"
        super().__init__(
            f"{path} {what}. The pipeline never follows a link, nor uses anything but a real "
            "folder, in an LEA's folders (a link could lead to another LEA's files, or put "
            "this LEA's files elsewhere), so it stopped there: nothing is taken from, moved "
            f"to or written into it. {fix}, then re-execute the LEA's failed run (the upload "
            "waits in the inbox or the archive); later uploads sync as usual."
        )


@dataclass(frozen=True)
class InboxListing:
    """Every LEA's inbox as one sensor tick sees it; `refused` holds the LEAs whose folder
    or inbox/ is not a real folder (a link), which were not listed."""

    inboxes: dict[str, list[RemoteFile]]
    refused: dict[str, NotARealFolder]


class LocalWriteFailed(Exception):
    """Writing the local copy of a download failed (a full disk, say): a problem of the local
    disk, which no SFTP retry mends and no SFTP message should be blamed for."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"could not write {path}: {error.strerror or error}")
        self.path = path
        self.error = error


class _LocalCopy:
    """The local end of a download, whose every OSError (opening, writing, the flush on
    closing) is raised as LocalWriteFailed, apart from the server's errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._local():
            self._file = path.open("wb")

    @contextmanager
    def _local(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise LocalWriteFailed(self.path, error) from error

    def write(self, chunk: bytes) -> None:
        with self._local():
            self._file.write(chunk)

    def __enter__(self) -> _LocalCopy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._local():
            self._file.close()


@dataclass(frozen=True)
class RemoteFile:
    """A directory entry as the server reports it; mtime is the server's, in whole seconds.

    `kind` comes from lstat, so a link is a "link" whatever it points at. A name that is not
    UTF-8 is kept readable (undecodable bytes escaped) with `utf8_name` False, so one odd
    name cannot stop the listing of every LEA."""

    name: str
    size: int
    mtime: int
    kind: str  # "file", "dir", "link" or "other"
    utf8_name: bool = True


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

    _held: _HeldConnection | None = PrivateAttr(default=None)

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Every operation inside the block shares one SSH connection (made when first
        needed), instead of a handshake per listing, file and move: a step's whole SFTP
        work. A connection that fails is dropped and the retry makes a new one."""
        if self._held is not None:
            yield
            return
        self._held = _HeldConnection()
        try:
            yield
        finally:
            held, self._held = self._held, None
            held.close()

    @contextmanager
    def session(self) -> Iterator[paramiko.SFTPClient]:
        """A connected SFTP client; connecting retries transient faults with backoff.
        Inside `connected()`, the block's shared connection."""
        held = self._held
        if held is not None:
            if held.sftp is None:
                held.client, held.sftp = self._open()
            try:
                yield held.sftp
            except (*TRANSIENT, OSError) as error:
                if not isinstance(error, (PermissionError, FileNotFoundError)):
                    held.close()  # broken or in doubt: the next attempt connects afresh
                raise
            return
        client, sftp = self._open()
        try:
            yield sftp
        finally:
            client.close()

    def _open(self) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
        client = self._retry(self._connect, what=f"connect to {self.host}:{self.port}")
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.io_timeout_seconds)
        except BaseException:
            client.close()
            raise
        return client, sftp

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

    def _retry(self, action: Callable[[], T], *, what: str, access: str | None = None) -> T:
        """`action`, again after a transient fault; a refusal becomes an SftpError saying
        which access the pipeline's user lacks (`access`, e.g. "write access to /x/"), since
        no retry mends a permission."""
        for attempt in range(self.retries + 1):
            try:
                return action()
            except PermissionError:
                if access is None:
                    raise
                raise SftpError(
                    f"Permission denied: could not {what} on {self._host_id()}. Give the "
                    f"pipeline's SFTP user '{self.username}' {access}; nothing is lost, and "
                    "this is done again when the run is retried."
                ) from None
            except (SftpError, FileNotFoundError):
                raise
            except (*TRANSIENT, OSError) as error:
                if attempt == self.retries:
                    raise SftpError(
                        f"Could not {what} after {self.retries + 1} attempts: {error}. "
                        "Check that the server is up and reachable; nothing is lost, and the "
                        "upload is retried."
                    ) from error
                delay = self.retry_backoff_seconds * 2**attempt
                log.warning(
                    "SFTP %s failed (%s); retrying in %.1fs", what, type(error).__name__, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    # Listing -----------------------------------------------------------------------------

    def list_inboxes(self, quiet: QuietInboxes | None = None) -> InboxListing:
        """Every LEA folder's inbox in one connection (the sensor's whole tick).

        An inbox the pipeline may not read is skipped with a warning rather than stopping
        every other LEA's sync. An LEA folder or inbox/ that is a link is not listed (its
        listing would be another folder's) but returned in `refused`. With `quiet`, an inbox
        that memory knows to be empty, and whose mtime has not changed, is not read (listed
        as empty): see quiet_inboxes.py."""
        if quiet is not None:
            quiet.begin_tick()
        with self.session() as sftp:
            inboxes, refused = {}, {}
            for entry in _entries(sftp, "/"):
                lea_id = entry.name
                if not LEA_FOLDER.match(lea_id) or entry.kind not in ("dir", "link"):
                    continue
                try:
                    if entry.kind == "link":
                        _refuse(sftp, f"/{lea_id}", "link", entry.mtime)
                    mtime = _real_folder(sftp, f"/{lea_id}/inbox")
                    if quiet is not None and quiet.can_skip(lea_id, mtime):
                        inboxes[lea_id] = []
                        continue
                    inboxes[lea_id] = _entries(sftp, f"/{lea_id}/inbox")
                    if quiet is not None:
                        quiet.record(lea_id, mtime, len(inboxes[lea_id]))
                except NotARealFolder as error:
                    refused[lea_id] = error
                except FileNotFoundError:
                    continue
                except PermissionError:
                    log.warning(
                        "LEA %s: permission denied listing /%s/inbox; give the pipeline's SFTP "
                        "user read access to it",
                        lea_id,
                        lea_id,
                    )
            if quiet is not None:
                quiet.forget_others(set(inboxes))
            return InboxListing(inboxes, refused)

    def check_folders(self, paths: list[str]) -> None:
        """Each folder of these paths that exists, and every folder above it, is a real
        folder, never a link: NotARealFolder otherwise. A run checks all of an LEA's folders
        before it reads anything, so a link stops it before any file is read."""

        def check() -> None:
            with self.session() as sftp:
                checked: set[str] = set()  # /A is above all of A's folders: looked at once
                for path in paths:
                    current = ""
                    for part in [p for p in path.split("/") if p]:
                        current += "/" + part
                        if current in checked:
                            continue
                        try:
                            _real_folder(sftp, current)
                        except FileNotFoundError:
                            break  # made (and checked again) when first written to
                        checked.add(current)

        self._retry(
            check, what=f"check {', '.join(paths)}", access=f"read access to {', '.join(paths)}"
        )

    def list_dir(self, path: str) -> list[RemoteFile]:
        def listing() -> list[RemoteFile]:
            with self.session() as sftp:
                _real_folders(sftp, path)
                return _entries(sftp, path)

        return self._retry(listing, what=f"list {path}", access=f"read access to {path}/")

    # Transfers ---------------------------------------------------------------------------

    def download(
        self, remote_path: str, local_path: Path, max_bytes: int | None = None
    ) -> RemoteFile:
        """Fetch one file with prefetch; returns the server's lstat taken after the transfer,
        so the caller can tell whether it changed (or became a link) while being read.

        A dropped connection starts the file again from the first byte into a fresh local
        file, so a partial transfer is never what the caller gets. More than `max_bytes`
        stops the transfer: a file that grows without end cannot fill the archive's disk.
        FileNotFoundError: the remote file is gone (deleted before or while it was read);
        LocalWriteFailed: `local_path` could not be written (a full disk), never retried;
        NotARealFolder: a folder of `remote_path` is a link, before or after the transfer."""

        folder = posixpath.dirname(remote_path)

        def fetch() -> RemoteFile:
            with self.session() as sftp:
                _real_folders(sftp, folder)
                with sftp.open(remote_path, "rb") as remote, _LocalCopy(local_path) as out:
                    size = remote.stat().st_size or 0
                    if max_bytes is not None and size > max_bytes:
                        raise FileTooLarge(f"{remote_path} is {size:,} bytes, over {max_bytes:,}")
                    remote.prefetch(size, max_concurrent_requests=64)
                    copied = 0
                    while chunk := remote.read(1 << 15):
                        copied += len(chunk)
                        if max_bytes is not None and copied > max_bytes:
                            raise FileTooLarge(
                                f"{remote_path} grew past {max_bytes:,} bytes while downloading"
                            )
                        out.write(chunk)
                attrs = sftp.lstat(remote_path)
                _real_folders(sftp, folder)  # and still was, once the file had been read
                return RemoteFile(
                    posixpath.basename(remote_path),
                    attrs.st_size or 0,
                    int(attrs.st_mtime or 0),
                    _kind(attrs.st_mode or 0),
                )

        return self._retry(
            fetch, what=f"download {remote_path}", access=f"read access to {remote_path}"
        )

    def write_bytes(self, remote_path: str, data: bytes) -> None:
        """Write a file atomically: to a temporary name, then renamed into place. Missing
        folders are created; a folder on the way that is a link is refused."""

        def put() -> None:
            with self.session() as sftp:
                _real_folders(sftp, posixpath.dirname(remote_path), create=True)
                partial = remote_path + ".partial"
                sftp.putfo(io.BytesIO(data), partial, confirm=True)
                sftp.posix_rename(partial, remote_path)

        self._retry(
            put,
            what=f"write {remote_path}",
            access=f"write access to {posixpath.dirname(remote_path)}/",
        )

    def move_files(self, names: list[str], source_dir: str, target_dir: str) -> None:
        """Move files out of an inbox once archived (an empty inbox tells the LEA so)."""

        def move() -> None:
            with self.session() as sftp:
                _real_folders(sftp, source_dir)
                _real_folders(sftp, target_dir, create=True)
                for name in names:
                    try:
                        sftp.posix_rename(f"{source_dir}/{name}", f"{target_dir}/{name}")
                    except FileNotFoundError:
                        continue  # already moved by an earlier attempt

        self._retry(
            move,
            what=f"move files from {source_dir}/ to {target_dir}/",
            access=f"write access to {source_dir}/ and {posixpath.dirname(target_dir)}/",
        )


class _HeldConnection:
    """The connection an `SftpResource.connected()` block shares, once made."""

    def __init__(self) -> None:
        self.client: paramiko.SSHClient | None = None
        self.sftp: paramiko.SFTPClient | None = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = self.sftp = None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _entries(sftp: paramiko.SFTPClient, path: str) -> list[RemoteFile]:
    entries = []
    for raw, attrs in _listdir_raw(sftp, path):
        try:
            name, utf8 = raw.decode("utf-8"), True
        except UnicodeDecodeError:
            name, utf8 = raw.decode("utf-8", "backslashreplace"), False
        entries.append(
            RemoteFile(
                name,
                attrs.st_size or 0,
                int(attrs.st_mtime or 0),
                _kind(attrs.st_mode or 0),
                utf8,
            )
        )
    return sorted(entries, key=lambda f: f.name)


def _listdir_raw(
    sftp: paramiko.SFTPClient, path: str
) -> list[tuple[bytes, paramiko.SFTPAttributes]]:
    """paramiko's listdir_attr, keeping names as bytes.

    paramiko decodes every name as strict UTF-8, so a single file named in Windows-1252 would
    make listing the whole server fail. This reads the same SSH_FXP_READDIR replies through
    paramiko's request machinery and leaves decoding to the caller."""
    _, msg = sftp._request(CMD_OPENDIR, sftp._adjust_cwd(path))
    handle = msg.get_binary()
    found: list[tuple[bytes, paramiko.SFTPAttributes]] = []
    try:
        while True:
            try:
                kind, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError(f"expected a name list reading {path}")
            for _ in range(msg.get_int()):
                name = msg.get_string()
                msg.get_string()  # longname, for humans
                attrs = paramiko.SFTPAttributes._from_msg(msg)
                if name not in (b".", b".."):
                    found.append((name, attrs))
    finally:
        sftp._request(CMD_CLOSE, handle)
    return found


def _real_folders(sftp: paramiko.SFTPClient, path: str, *, create: bool = False) -> None:
    """Every folder of `path`, from the top down, is a real folder: each is lstat-ed, so a
    link anywhere on the way raises NotARealFolder instead of being followed by the server.
    A missing folder raises FileNotFoundError, or is made when `create`.

    A server resolves links inside a path by itself and SFTP has no way to forbid it, so
    this is checked right before each use (and again after a download); no client can close
    the moment between the check and the use: see the README."""
    current = ""
    for part in [p for p in path.split("/") if p]:
        current += "/" + part
        try:
            _real_folder(sftp, current)
        except FileNotFoundError:
            if not create:
                raise
            sftp.mkdir(current)


def _real_folder(sftp: paramiko.SFTPClient, path: str) -> int:
    """The folder's mtime; NotARealFolder if it is a link or not a folder."""
    attrs = sftp.lstat(path)
    kind = _kind(attrs.st_mode or 0)
    if kind != "dir":
        _refuse(sftp, path, kind, int(attrs.st_mtime or 0))
    return int(attrs.st_mtime or 0)


def _refuse(sftp: paramiko.SFTPClient, path: str, kind: str, mtime: int) -> NoReturn:
    target = None
    if kind == "link":
        try:
            target = "".join(
                c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                for c in sftp.readlink(path) or ""
            )[:200]
        except OSError:
            target = None  # where it points is a detail; that it is a link is what matters
    raise NotARealFolder(path, kind, target, mtime)
