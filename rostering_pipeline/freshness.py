"""LEA freshness: which LEAs have sent no upload for too many school days."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl


def stale_leas(conn: duckdb.DuckDBPyConnection, today: date, max_school_days: int) -> pl.DataFrame:
    """LEAs whose newest upload was received more than `max_school_days` school days
    (weekdays; holidays are not modelled) before `today`."""
    last = conn.execute(
        "select lea_id, max(received_at)::date as last_upload from ingest.uploads group by lea_id"
        " order by lea_id"
    ).pl()
    return last.with_columns(
        pl.business_day_count(pl.col("last_upload"), pl.lit(today)).alias("school_days_since")
    ).filter(pl.col("school_days_since") > max_school_days)
