"""Likely causes of a bad value, in words that tell the LEA what happened."""

from __future__ import annotations

import polars as pl

SPREADSHEET_DATETIME = r"^\d{1,4}[-/]\d{1,2}[-/]\d{1,4}[ T]\d{1,2}:\d{2}(:\d{2})?$"
LEADING_ZERO = "A spreadsheet probably removed a leading zero: export the file as text."
RESAVED_DATE = (
    "The date carries a time, as when a spreadsheet re-saves a CSV: "
    "export the file from the SIS again without opening it in a spreadsheet."
)


def likely_cause(lea_id: str, column: pl.Expr, value: pl.Expr) -> pl.Expr:
    """A hint that replaces the rule's generic fix where the value shows a known cause
    (null where none does): a campus ID one or two zeros short of a zero-led LEA, or a
    date a spreadsheet re-saved with a time."""
    lost_zero = (
        column.str.ends_with("campus_id")
        & pl.lit(lea_id.startswith("0"))
        & value.str.contains(r"^\d{1,8}$")
        & value.str.zfill(9).str.starts_with(lea_id)
    )
    resaved = column.str.ends_with("date") & value.str.contains(SPREADSHEET_DATETIME)
    return (
        pl.when(lost_zero)
        .then(pl.lit(LEADING_ZERO))
        .when(resaved)
        .then(pl.lit(RESAVED_DATE))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
