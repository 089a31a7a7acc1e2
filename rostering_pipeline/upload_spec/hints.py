"""Likely causes of a bad value, in words that tell the LEA what happened."""

from __future__ import annotations

import re

SPREADSHEET_DATETIME = re.compile(r"^\d{1,4}[-/]\d{1,2}[-/]\d{1,4}[ T]\d{1,2}:\d{2}(:\d{2})?$")
LEADING_ZERO = "A spreadsheet probably removed a leading zero: export the file as text."
RESAVED_DATE = (
    "The date carries a time, as when a spreadsheet re-saves a CSV: "
    "export the file from the SIS again without opening it in a spreadsheet."
)


def likely_cause(lea_id: str, column: str, value: str | None) -> str | None:
    """A hint that replaces the rule's generic fix, when the value shows a known cause."""
    if value is None:
        return None
    if column.endswith("campus_id") and lea_id.startswith("0") and value.isdigit():
        if len(value) < 9 and value.zfill(9).startswith(lea_id):
            return LEADING_ZERO
    if column.endswith("date") and SPREADSHEET_DATETIME.match(value):
        return RESAVED_DATE
    return None
