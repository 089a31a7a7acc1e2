"""Every rejection of every upload, recorded in quality.rejections for the LEA and for
operators, and counted (without values) for Dagster's metadata."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from .uploads import Upload
from .warehouse import Connection
from .warehouse.rejections import replace_rejections


def record_rejections(
    conn: Connection, upload: Upload, rejections: pl.DataFrame, now: datetime
) -> None:
    """Replace the upload's rejections (validating the same upload twice records them once)."""
    replace_rejections(conn, upload, rejections, now)


def rule_counts(rejections: pl.DataFrame) -> dict[str, int]:
    """Rejections per (file, rule): safe for Dagster metadata, carries no values."""
    counts = rejections.group_by("file", "rule").len().sort("file", "rule")
    return {f"{r['file']}: {r['rule']}": r["len"] for r in counts.iter_rows(named=True)}
