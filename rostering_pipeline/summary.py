"""The table `rostering sync` and `rostering demo` print: one line per upload synced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from .runner import SyncedRun

QUERY = """
select u.lea_id, u.upload_id, u.status,
    (select count(*) from roster.students s where s.lea_id = u.lea_id) as students,
    (select count(*) from roster.staff s where s.lea_id = u.lea_id) as staff,
    (select count(*) from roster.classes c where c.lea_id = u.lea_id) as classes,
    (select count(*) from roster.enrollments e where e.lea_id = u.lea_id) as enrollments,
    (select count(*) from roster.changes c where c.upload_id = u.upload_id) as changes,
    (select count(distinct (r.file, r.line)) from quality.rejections r
        where r.upload_id = u.upload_id and r.level = 'row') as rejected_rows,
    (select count(*) from quality.rejections r where r.upload_id = u.upload_id
        and r.level = 'upload') as upload_faults
from ingest.uploads u where u.upload_id = ? or (? is null and u.run_id = ?)
"""
HEADER = (
    "lea_id", "status", "students", "staff", "classes", "enrollments", "changes",
    "rejected rows", "upload faults", "seconds",
)  # fmt: skip


def print_summary(warehouse: Path, runs: list[SyncedRun], say: Callable[[str], None]) -> None:
    if not runs:
        say("Nothing to sync: no complete upload in any inbox.")
        return
    rows = []
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for run in runs:
            found = conn.execute(QUERY, [run.upload_id, run.upload_id, run.run_id]).fetchall()
            for r in found:
                rows.append((r[0], r[2], *map(str, r[3:]), f"{run.seconds:.1f}"))
            if not found:
                rows.append((run.lea_id, "run failed", *["-"] * 7, f"{run.seconds:.1f}"))
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *rows, strict=False)]
    say("")
    for row in (HEADER, *rows):
        say(
            "  ".join(
                str(v).rjust(w) if i > 1 else str(v).ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
