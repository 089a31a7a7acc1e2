"""LEA freshness: which LEAs have sent no upload for too many school days."""

from __future__ import annotations

from datetime import date

import polars as pl

from .warehouse import Connection
from .warehouse import uploads as upload_rows


def stale_leas(conn: Connection, today: date, max_school_days: int) -> pl.DataFrame:
    """LEAs whose newest upload was received more than `max_school_days` school days
    (weekdays; holidays are not modelled) before `today`."""
    last = upload_rows.last_upload_dates(conn)
    return last.with_columns(
        pl.business_day_count(pl.col("last_upload"), pl.lit(today)).alias("school_days_since")
    ).filter(pl.col("school_days_since") > max_school_days)
