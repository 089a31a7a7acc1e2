"""Named places where a test can make the process fail, to prove a crash loses nothing.

`ROSTERING_FAILPOINT=apply.mid:kill` ends the process abruptly (as a power cut would) when
the apply reaches that point; `:raise` raises instead, and `:enospc` raises the OSError of a
full disk (for a point where the pipeline writes a local file). Unset in every real
deployment.
"""

from __future__ import annotations

import errno
import os

FAILPOINT_ENV = "ROSTERING_FAILPOINT"


class FailpointReached(RuntimeError):
    """Raised at a failpoint set to `raise`."""


def failpoint(name: str) -> None:
    setting = os.environ.get(FAILPOINT_ENV)
    if not setting:
        return
    point, _, action = setting.partition(":")
    if point != name:
        return
    if action == "kill":
        os._exit(137)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise FailpointReached(f"failpoint {name} reached")
