"""Faults injected from the test side at named points of a sync, so the product carries no
hook for them: the apply fails or its process dies before its first write or after the first
entity's, and the archive's disk is full.

In the test's own process (`pipeline.sync()` runs in-process) use `fail_at` or
`archive_disk_full` with pytest's monkeypatch; in a subprocess, run a `rostering` command
through this module:

    python -m rostering_pipeline_tests.fault_points apply.mid:kill sync
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from rostering_pipeline import sftp
from rostering_pipeline.roster import apply

#: Exit status of a process ended by an injected kill (as SIGKILL's 128 + 9).
KILLED = 137
#: A point: how many of the apply's per-entity writes happen before the fault.
POINTS = {"apply.begin": 0, "apply.mid": 1}


def fail_at(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    """`point:action`: at `point` (see POINTS) `kill` the process (no clean-up, as a power
    cut) or `raise` a DuckDB error inside the apply's transaction (as a failing write)."""
    point, _, action = setting.partition(":")
    writes_before = POINTS[point]
    if action not in ("kill", "raise"):
        raise ValueError(f"{setting}: the action is kill or raise")
    write_diff = apply.write_entity_diff
    done = 0

    def faulty_write_diff(conn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if done == writes_before:
            if action == "kill":
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(KILLED)
            # DuckDB's error(): the transaction sees a statement fail, as on a refused write.
            conn.execute("select error(?)", [f"injected fault at {point}"])
        done += 1
        return write_diff(conn, *args, **kwargs)

    monkeypatch.setattr(apply, "write_entity_diff", faulty_write_diff)


class _CopyOntoAFullDisk(sftp._LocalCopy):
    """A download's local end writing to /dev/full: every write the kernel refuses with
    ENOSPC, as on a full disk (the archive's temporary file is created, and stays empty)."""

    def __init__(self, path: Any) -> None:
        self.path = path
        with self._local():
            self._file = open("/dev/full", "wb", buffering=0)  # noqa: SIM115


def archive_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the pipeline downloads into the archive fails to write: no space left."""
    monkeypatch.setattr(sftp, "_LocalCopy", _CopyOntoAFullDisk)


def main(argv: list[str]) -> int:
    """`python -m rostering_pipeline_tests.fault_points POINT:ACTION COMMAND…`: the
    `rostering` COMMAND with the fault set."""
    from rostering_pipeline.cli import main as rostering

    with pytest.MonkeyPatch.context() as monkeypatch:
        fail_at(monkeypatch, argv[0])
        return rostering(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
