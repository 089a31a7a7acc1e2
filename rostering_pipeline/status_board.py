"""The per-LEA status board: every LEA's latest upload and where it stands, the page an
operator opens first (the `lea_status_board` asset in the UI, `rostering status` in a terminal).

Read from the warehouse only (ingest.uploads, ingest.decisions, roster.changes,
quality.rejections), so the UI and the terminal always agree.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import quote

import polars as pl

from .freshness import stale_leas
from .markdown_text import md_text
from .warehouse import Connection
from .warehouse.reports import latest_uploads

#: What an LEA's latest upload came to, as the board shows it.
STATES = ("applied", "held", "rejected", "failed", "in progress", "superseded")


def _state(status: str, reason: str | None) -> str:
    if status in ("applied", "duplicate"):
        return "applied"
    if status == "received":
        # A failed run leaves its note on an upload still waiting (ledger.note_failure).
        return "failed" if reason and reason.startswith("run ") else "in progress"
    return status


def status_board(conn: Connection, today: date, max_school_days: int) -> pl.DataFrame:
    """One row per LEA: its latest upload, what became of it, its counts, and whether the
    LEA has gone quiet (no upload for more than `max_school_days` school days)."""
    rows = latest_uploads(conn)
    stale = stale_leas(conn, today, max_school_days).select("lea_id", "school_days_since")
    return (
        rows.join(stale, on="lea_id", how="left")
        .with_columns(
            pl.struct("status", "reason")
            .map_elements(lambda r: _state(r["status"], r["reason"]), return_dtype=pl.String)
            .alias("state"),
            pl.col("school_days_since").is_not_null().alias("stale"),
        )
        .sort("lea_id")
    )


def needs_attention(board: pl.DataFrame) -> pl.DataFrame:
    return board.filter(pl.col("state").is_in(["held", "failed", "rejected"]) | pl.col("stale"))


def _decision(row: dict) -> str:
    text = row["state"]
    if row["state"] == "held" and row["held_by"]:
        text += f" ({row['held_by']})"
    if row["stale"]:
        text += f", stale: {row['school_days_since']} school days since"
    return text


def runs_url(lea_id: str) -> str:
    """The Runs page filtered on the LEA's partition: every run of it, however launched."""
    return "/runs?" + quote(f"q[0]=tag:dagster/partition={lea_id}", safe="=&")


def board_markdown(board: pl.DataFrame) -> str:
    """The board as the asset page shows it: a table, with links to the LEA's runs and its
    sync report."""
    lines = [
        "| LEA | state | latest upload | received (UTC) | adds | updates | drops "
        "| rejected rows | students | run | report |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in board.iter_rows(named=True):
        lea = row["lea_id"]
        run = (
            f"[{row['run_id'][:8]}](/runs/{row['run_id']}) · [all]({runs_url(lea)})"
            if row["run_id"]
            else f"[runs]({runs_url(lea)})"
        )
        lines.append(
            f"| {md_text(lea)} | **{_decision(row)}** | `{row['upload_id']}` "
            f"| {row['received_at']:%Y-%m-%d %H:%M} | {row['adds']} | {row['updates']} "
            f"| {row['drops']} | {row['rejected_rows']} | {row['students']} | {run} "
            f"| [sync_report](/assets/sync_report?partition={quote(lea)}) |"
        )
    return "\n".join(lines)


def board_table(board: pl.DataFrame) -> list[dict]:
    """The board's rows as plain values, for the table the asset page shows inline."""
    return [
        {
            "LEA": r["lea_id"],
            "state": _decision(r),
            "latest upload": r["upload_id"],
            "received (UTC)": f"{r['received_at']:%Y-%m-%d %H:%M}",
            "adds": r["adds"],
            "updates": r["updates"],
            "drops": r["drops"],
            "rejected rows": r["rejected_rows"],
            "students": r["students"],
            "run": r["run_id"] or "-",
        }
        for r in board.iter_rows(named=True)
    ]


HEADER = (
    "lea_id", "state", "latest upload", "received (UTC)", "adds", "updates", "drops",
    "rejected rows", "students", "run",
)  # fmt: skip


def board_text(board: pl.DataFrame) -> list[str]:
    """The board as `rostering status` prints it."""
    rows = [
        (
            r["lea_id"],
            _decision(r),
            r["upload_id"],
            f"{r['received_at']:%Y-%m-%d %H:%M}",
            *(str(r[k]) for k in ("adds", "updates", "drops", "rejected_rows", "students")),
            r["run_id"] or "-",
        )
        for r in board.iter_rows(named=True)
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *rows, strict=False)]
    return [
        "  ".join(
            str(v).rjust(w) if 4 <= i <= 8 else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in (HEADER, *rows)
    ]
