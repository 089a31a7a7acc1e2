"""The table `rostering sync` and `rostering demo` print: one line per upload synced."""

from __future__ import annotations

from collections.abc import Callable

from .runner import SyncedRun
from .warehouse import WarehouseResource
from .warehouse.reports import upload_summaries

HEADER = (
    "lea_id", "status", "students", "staff", "classes", "enrollments", "changes",
    "rejected rows", "upload faults", "seconds",
)  # fmt: skip


def print_summary(
    warehouse: WarehouseResource, runs: list[SyncedRun], say: Callable[[str], None]
) -> None:
    if not runs:
        say("Nothing to sync: no complete upload in any inbox.")
        return
    rows = []
    with warehouse.connect(read_only=True) as conn:
        for run in runs:
            found = upload_summaries(conn, run.upload_id, run.run_id)
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
