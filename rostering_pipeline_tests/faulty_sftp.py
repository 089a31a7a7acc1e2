"""The loopback SFTP server of the demo with the faults the tests inject: a connection cut
mid-download, permission denied on writes or reads under given paths, and a callback when a
file is opened for reading (so a test can act as the LEA at that moment)."""

from __future__ import annotations

import logging
import os
import posixpath
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import asyncssh

from rostering_demo.embedded_sftp import ConnectionState, EmbeddedSftpServer, RootedSftp

log = logging.getLogger(__name__)


class _CountingConnection(ConnectionState):
    """Counts the connection on its server, and the file bytes sent on it (for the cut)."""

    def __init__(self, owner: FaultySftpServer) -> None:
        super().__init__(owner)
        self.file_bytes_sent = 0
        self.cut = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        super().connection_made(conn)
        self._owner.connections_made += 1


class _FaultySftp(RootedSftp):
    """A rooted SFTP session answering as the server's fault settings say.

    ``cut_after_bytes``: counting is per SSH connection; the read that crosses the limit is
    still answered and the first read after it aborts the TCP connection, so the client
    receives at least ``cut_after_bytes`` (rounded up to one read). The settings are re-read
    from the server on every call, so a test can clear them and let a retry succeed.

    ``deny_writes`` / ``deny_reads``: the test suite runs as root, for whom file modes deny
    nothing, so a folder the pipeline may not write to, or a file it may not read, answers as
    a real server would (SSH_FX_PERMISSION_DENIED) to opening a file, creating a folder,
    renaming or removing.

    ``before_open`` / ``after_open``: called with the path the client asked for
    (``/101912/inbox/students.csv``) on the server's thread, before a file is opened for
    reading and once it is open.
    """

    def __init__(
        self, chan: asyncssh.SSHServerChannel, root: Path, owner: FaultySftpServer
    ) -> None:
        super().__init__(chan, root)
        self._owner = owner

    def _state(self) -> _CountingConnection:
        owner = self.connection.get_owner()
        assert isinstance(owner, _CountingConnection)
        return owner

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        limit = self._owner.cut_after_bytes
        state = self._state()
        if limit is not None and state.file_bytes_sent >= limit:
            # Prefetching clients have many reads queued; cut only once.
            if not state.cut and self._owner._take_cut():
                state.cut = True
                log.debug("faulty sftp: cutting connection after %d bytes", state.file_bytes_sent)
                self.connection.abort()
            if state.cut:
                raise asyncssh.SFTPConnectionLost("connection cut by fault injection")
        data = super().read(file_obj, offset, size)
        assert isinstance(data, bytes)
        state.file_bytes_sent += len(data)
        return data

    def _denied(self, *paths: bytes, prefixes: Iterable[str] | None = None) -> None:
        for path in paths:
            full = posixpath.normpath("/" + os.fsdecode(path).lstrip("/"))
            for prefix in self._owner.deny_writes if prefixes is None else prefixes:
                if full == prefix or full.startswith(prefix.rstrip("/") + "/"):
                    raise asyncssh.SFTPPermissionDenied("Permission denied")

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT):
            self._denied(path)
        reading = bool(pflags & asyncssh.FXF_READ)
        if reading:
            self._denied(path, prefixes=self._owner.deny_reads)
            if self._owner.before_open is not None:
                self._owner.before_open(os.fsdecode(path))
        opened = super().open(path, pflags, attrs)
        if reading and self._owner.after_open is not None:
            self._owner.after_open(os.fsdecode(path))
        return opened

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._denied(path)
        return super().mkdir(path, attrs)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._denied(oldpath, newpath)
        return super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._denied(oldpath, newpath)
        return super().posix_rename(oldpath, newpath)

    def remove(self, path: bytes) -> None:
        self._denied(path)
        return super().remove(path)


class FaultySftpServer(EmbeddedSftpServer):
    """EmbeddedSftpServer plus fault settings, each mutable while the server runs."""

    def __init__(self, root: Path, **server: Any) -> None:
        super().__init__(root, **server)
        #: Cut a connection once it has sent this many file bytes (None: never).
        self.cut_after_bytes: int | None = None
        #: How many connections to cut at ``cut_after_bytes`` (None: every one), so a test
        #: can drop the first download and let the client's retry succeed.
        self.cuts_left: int | None = None
        #: Server paths (``/101912/outbox``) under which every write is refused.
        self.deny_writes: set[str] = set()
        #: Server paths (``/101912/inbox/students.csv``) no file under which may be read.
        self.deny_reads: set[str] = set()
        #: Called with the path when a file is about to be, or has just been, opened for
        #: reading.
        self.before_open: Callable[[str], None] | None = None
        self.after_open: Callable[[str], None] | None = None
        #: TCP connections accepted so far (each one an SSH handshake the client paid for).
        self.connections_made = 0
        self._cut_lock = threading.Lock()

    def _take_cut(self) -> bool:
        """Whether this connection may be cut (counts down ``cuts_left``)."""
        with self._cut_lock:
            if self.cuts_left is None:
                return True
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            return True

    def _connection(self) -> ConnectionState:
        return _CountingConnection(self)

    def _session(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        return _FaultySftp(chan, self.root, self)
