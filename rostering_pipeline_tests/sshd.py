"""Connection details for the throwaway OpenSSH sshd that `./run test` starts.

`scripts/start_sshd.sh` starts sshd on 127.0.0.1, serving only SFTP, chrooted to a local
directory, and `./run test` exports its details as ROSTERING_TEST_SSHD_* variables.
`sshd_from_env()` turns those into an `SshdServer` (or None when sshd is not running).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ENV_PREFIX = "ROSTERING_TEST_SSHD_"
_REQUIRED = ("HOST", "PORT", "USER", "KEY", "KNOWN_HOSTS", "ROOT")


@dataclass(frozen=True)
class SshdServer:
    host: str
    port: int
    user: str
    key_path: Path
    known_hosts_path: Path
    root: Path
    """Local directory the server presents as `/` (its ChrootDirectory)."""

    def local_path(self, remote_path: str) -> Path:
        """The local path behind an absolute remote path, e.g. `/101912/inbox`."""
        remote = PurePosixPath(remote_path)
        if not remote.is_absolute() or ".." in remote.parts:
            raise ValueError(f"expected an absolute remote path without '..': {remote_path!r}")
        return self.root.joinpath(*remote.parts[1:])

    def make_remote_dir(self, remote_path: str) -> Path:
        """Create a directory inside the chroot, owned by the SFTP user, and return it.

        The chroot directory itself is root-owned and read-only to the SFTP user, so
        folders the server should accept uploads into (the LEA folders) are made here.
        """
        local = self.local_path(remote_path)
        local.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam(self.user)
        current = local
        while current != self.root:
            if current.stat().st_uid != entry.pw_uid:
                os.chown(current, entry.pw_uid, entry.pw_gid)
            current = current.parent
        return local


def sshd_from_env(environ: dict[str, str] | None = None) -> SshdServer | None:
    """The sshd described by ROSTERING_TEST_SSHD_* variables, or None if any is unset."""
    env = os.environ if environ is None else environ
    values = {name: env.get(ENV_PREFIX + name, "") for name in _REQUIRED}
    if not all(values.values()):
        return None
    return SshdServer(
        host=values["HOST"],
        port=int(values["PORT"]),
        user=values["USER"],
        key_path=Path(values["KEY"]),
        known_hosts_path=Path(values["KNOWN_HOSTS"]),
        root=Path(values["ROOT"]),
    )
