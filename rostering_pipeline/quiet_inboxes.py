"""Which empty inboxes the sensor need not read again: the folder's mtime says nothing landed.

The sensor lists every LEA's inbox at every tick. At 1,200 LEAs that was ~0.9 s of the code
server's CPU and ~0.4 s of sshd's a tick (lstat, opendir, two readdirs and a close per LEA,
every 5 s, all day): most inboxes are empty most of the day. Creating, removing or renaming
an entry in a folder changes the folder's mtime, so an inbox that was empty and whose mtime
has not changed since is still empty: the tick's lstat of the inbox (made anyway, to refuse a
link) is enough, and its entries are not read.

Three things keep this exact rather than hopeful:

- SFTP gives mtimes in whole seconds: a file made in the same second as the listing that saw
  the inbox empty leaves the mtime as it was. An empty inbox is therefore trusted only after
  a second listing, at least CONFIRM_SECONDS later, found it empty with the same mtime (any
  entry made after that listing falls in a later second, so it changes the mtime).
- An inbox that held anything is read at every tick (a file written in place does not change
  its folder's mtime; the quiet period needs its size and mtime).
- Every `full_every_seconds` a tick reads every inbox. If one that this memory would have
  skipped holds files, the server does not keep folder mtimes (some SFTP gateways over object
  storage do not): the memory stops skipping for good (until the process restarts) and says
  so in a warning. Such a server's uploads are then seen at the next full tick at worst,
  once; after that, at every tick.

The memory lives in the process that runs the sensor (the code server), one per SFTP server
and user: a restart forgets it, and the first ticks read everything, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Seconds between the two empty listings that make an inbox's mtime trusted: more than the
#: one-second resolution of SFTP mtimes, with room for rounding.
CONFIRM_SECONDS = 2.0


@dataclass
class _Empty:
    mtime: int
    first_seen: float
    confirmed: bool = False


@dataclass
class QuietInboxes:
    """The empty inboxes of one SFTP server whose mtimes can be trusted, between ticks."""

    full_every_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    trusted: bool = True
    _empty: dict[str, _Empty] = field(default_factory=dict)
    _last_full: float | None = None
    _full: bool = False

    def begin_tick(self) -> None:
        """Called before a tick's listing: decides whether this tick reads every inbox."""
        now = self.clock()
        self._full = self._last_full is None or now - self._last_full >= self.full_every_seconds
        if self._full:
            self._last_full = now

    def can_skip(self, lea_id: str, mtime: int) -> bool:
        """Whether the inbox, whose lstat gave `mtime`, is known to be still empty."""
        if not self.trusted or self._full:
            return False
        seen = self._empty.get(lea_id)
        return seen is not None and seen.confirmed and seen.mtime == mtime

    def record(self, lea_id: str, mtime: int, entries: int) -> None:
        """What a listing of the inbox found: `entries` names in it, at `mtime`."""
        seen = self._empty.get(lea_id)
        if not mtime:  # a server that gives no folder times: nothing to trust
            self._empty.pop(lea_id, None)
            return
        if entries:
            if self._full and self.trusted and seen and seen.confirmed and seen.mtime == mtime:
                self.trusted = False
                self._empty.clear()
                log.warning(
                    "LEA %s: its inbox holds files although the folder's modification time "
                    "has not changed since it was empty; this SFTP server does not keep folder "
                    "times, so from now on every inbox is read at every sensor tick",
                    lea_id,
                )
                return
            self._empty.pop(lea_id, None)
            return
        now = self.clock()
        if seen is None or seen.mtime != mtime:
            self._empty[lea_id] = _Empty(mtime, now)
        elif now - seen.first_seen >= CONFIRM_SECONDS:
            seen.confirmed = True

    def forget_others(self, lea_ids: set[str]) -> None:
        """Drops the LEAs that are no longer listed (folder removed, or refused as a link)."""
        for lea_id in set(self._empty) - lea_ids:
            del self._empty[lea_id]


_MEMORIES: dict[tuple, QuietInboxes] = {}


def memory_for(server: tuple, full_every_seconds: float) -> QuietInboxes:
    """The process's memory for one SFTP server (whatever identifies it: address, user, the
    host key the client expects), made on first use."""
    memory = _MEMORIES.setdefault(server, QuietInboxes(full_every_seconds))
    memory.full_every_seconds = full_every_seconds
    return memory
