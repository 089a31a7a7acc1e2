"""In-process SFTP server on loopback, built on asyncssh.

Why this exists: the ``rostering demo`` command needs somewhere to serve sample
LEA uploads without an sshd on the machine, and the test suite needs a *real*
SFTP server that the pipeline's paramiko client talks to over TCP (real
handshake, real host-key pinning, real auth, real concurrent prefetch reads)
rather than a mocked client. Running the server on its own event loop in a
daemon thread lets synchronous callers (CLI, pytest, Dagster ops) use it as a
plain context manager.

Only loopback use is intended; this is not a production SFTP server. The faults the tests
inject (cut connections, denied paths) are a subclass in rostering_pipeline_tests/faulty_sftp.py.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncssh

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_THREAD_NAME = "embedded-sftp"


class _DemoteToDebug(logging.Filter):
    """Re-level asyncssh/asyncio records emitted on our server thread to DEBUG.

    asyncssh logs connection, auth and SFTP-session events at INFO (and our
    deliberate connection cuts would show up as noise). The embedded server must
    stay quiet in the CLI and in Dagster logs, so anything those libraries log
    from our loop thread is demoted to DEBUG and dropped unless that logger is
    enabled for DEBUG. Records from other threads are untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != _THREAD_NAME or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_DEMOTE = _DemoteToDebug()


def _install_log_demotion() -> None:
    # Logger filters are not inherited by child loggers, so attach to each
    # logger these libraries actually emit on.
    for name in ("asyncssh", "asyncssh.sftp", "asyncio"):
        logger = logging.getLogger(name)
        if _DEMOTE not in logger.filters:
            logger.addFilter(_DEMOTE)


class ConnectionState(asyncssh.SSHServer):
    """Per-connection auth policy and state.

    asyncssh creates one instance per TCP connection (see ``EmbeddedSftpServer._connection``),
    which makes it the place for per-connection state (the tests' fault injection subclasses
    it).
    """

    def __init__(self, owner: EmbeddedSftpServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._live_connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._live_connections.discard(self._conn)
        log.debug("embedded sftp: connection closed (%s)", type(exc).__name__ if exc else "clean")

    def begin_auth(self, username: str) -> bool:
        # Keys are only trusted for the one configured user, so a valid key
        # presented for another username is rejected. Always require auth.
        owner = self._owner
        if (
            self._conn is not None
            and owner._authorized_keys is not None
            and hmac.compare_digest(username.encode(), owner.username.encode())
        ):
            self._conn.set_authorized_keys(owner._authorized_keys)
        return True

    def password_auth_supported(self) -> bool:
        return self._owner.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._owner.password
        if expected is None:
            return False
        # Evaluate both comparisons so timing does not reveal which one failed.
        user_ok = hmac.compare_digest(username.encode(), self._owner.username.encode())
        pass_ok = hmac.compare_digest(password.encode(), expected.encode())
        ok = user_ok and pass_ok
        log.debug("embedded sftp: password auth %s", "accepted" if ok else "rejected")
        return ok


class RootedSftp(asyncssh.SFTPServer):
    """SFTP session confined to ``root``.

    asyncssh's ``chroot=`` already normalises ``..`` and absolute paths into the
    root, but it documents that pre-existing symlinks pointing outside are
    followed. LEA upload directories are untrusted input, so we also refuse any
    path whose fully resolved location leaves the root. (Conservative: such a
    link can be listed but not read, removed or renamed through SFTP.)
    """

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self._root_real = os.fsencode(os.path.realpath(root))

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        resolved = os.path.realpath(local)
        if resolved != self._root_real and not resolved.startswith(self._root_real + b"/"):
            raise asyncssh.SFTPNoSuchFile("File not found")
        return local


class EmbeddedSftpServer:
    """A loopback SFTP server serving ``root`` as ``/``, running in a daemon thread.

    Use as a context manager (``with EmbeddedSftpServer(root) as srv: ...``) or
    call ``start()``/``stop()``. Clients pin ``host_key_line`` in their
    known_hosts so host-key verification stays on even in tests.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "rostering",
        password: str | None = "rostering",
        authorized_key_path: Path | None = None,
        host_key_path: Path | None = None,
    ) -> None:
        if password is None and authorized_key_path is None:
            raise ValueError("need a password or an authorized_key_path, or nobody can log in")
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADirectoryError(str(self.root))
        self._host = host
        self._requested_port = port
        self.username = username
        self.password = password
        self._host_key: asyncssh.SSHKey = (
            asyncssh.read_private_key(host_key_path)
            if host_key_path is not None
            else asyncssh.generate_private_key("ssh-ed25519")
        )
        self._authorized_keys: asyncssh.SSHAuthorizedKeys | None = (
            asyncssh.read_authorized_keys(str(authorized_key_path))
            if authorized_key_path is not None
            else None
        )
        self._live_connections: set[asyncssh.SSHServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._port: int | None = None

    # -- public properties -------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The actually bound port (useful when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def host_public_key(self) -> str:
        """Host public key as ``"<type> <base64>"`` (OpenSSH format, no comment)."""
        exported = self._host_key.export_public_key("openssh").decode("ascii")
        key_type, key_b64 = exported.split()[:2]
        return f"{key_type} {key_b64}"

    @property
    def host_key_line(self) -> str:
        """A known_hosts line pinning this server's host key at its host:port."""
        name = self._host if self.port == 22 else f"[{self._host}]:{self.port}"
        return f"{name} {self.host_public_key}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Start listening; blocks until the port is bound. Returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        _install_log_demotion()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=_THREAD_NAME, daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(), loop)
            self._acceptor = future.result(timeout=_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self._port = self._acceptor.get_port()
        log.debug("embedded sftp: listening on %s:%d", self._host, self._port)
        return self

    def stop(self) -> None:
        """Close the listener and live connections, stop the loop, join the thread.

        Bounded: each step waits at most a few seconds, so a wedged client cannot
        hang test teardown. Safe to call more than once.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed() and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(
                    timeout=_STOP_TIMEOUT_S
                )
            except Exception as exc:  # teardown must not raise
                log.debug("embedded sftp: shutdown error %s", type(exc).__name__)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_STOP_TIMEOUT_S)
        self._loop = self._thread = self._acceptor = None
        log.debug("embedded sftp: stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- loop-thread internals ---------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def _connection(self) -> ConnectionState:
        """The state of one new SSH connection (a subclass may add its own)."""
        return ConnectionState(self)

    def _session(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        """The SFTP session of one channel (a subclass may serve another kind)."""
        return RootedSftp(chan, self.root)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            self._host,
            self._requested_port,
            server_factory=self._connection,
            server_host_keys=[self._host_key],
            sftp_factory=self._session,
            allow_scp=False,
            # Explicitly off: only password and/or the given authorized keys.
            password_auth=self.password is not None,
            public_key_auth=self._authorized_keys is not None,
            authorized_client_keys=None,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            known_client_hosts=None,
            agent_forwarding=False,
            allow_pty=False,
            rdns_lookup=False,
            login_timeout=30,
        )

    async def _shutdown(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        conns = list(self._live_connections)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=2.0)
        if self._acceptor is not None:
            await asyncio.wait_for(self._acceptor.wait_closed(), timeout=2.0)
