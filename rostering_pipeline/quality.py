"""quality.rejections: every rejection of every upload, kept for the LEA and for operators."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl

from .uploads import Upload
from .warehouse import registered


def record_rejections(
    conn: duckdb.DuckDBPyConnection, upload: Upload, rejections: pl.DataFrame, now: datetime
) -> None:
    """Replace the upload's rejections (validating the same upload twice records them once)."""
    conn.execute("begin transaction")
    try:
        conn.execute("delete from quality.rejections where upload_id = ?", [upload.upload_id])
        with registered(conn, "new_rejections", rejections):
            conn.execute(
                'insert into quality.rejections (upload_id, lea_id, file, line, "column", rule,'
                ' value, fix, level, recorded_at) select ?, ?, file, line, "column", rule,'
                " value, fix, level, ? from new_rejections",
                [upload.upload_id, upload.lea_id, now],
            )
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def rule_counts(rejections: pl.DataFrame) -> dict[str, int]:
    """Rejections per (file, rule): safe for Dagster metadata, carries no values."""
    counts = rejections.group_by("file", "rule").len().sort("file", "rule")
    return {f"{r['file']}: {r['rule']}": r["len"] for r in counts.iter_rows(named=True)}
