"""The shape of a rejection: what an LEA is told about one bad row, file or upload."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import polars as pl

#: `row`: the row is skipped; `upload`: nothing of the upload is applied; `warning`: applied anyway.
LEVELS = ("row", "upload", "warning")
#: The longest value (or column name) a rejection quotes: the LEA has the whole row in its own
#: file, and a megabyte value would otherwise be copied whole into quality.rejections and the
#: report.
MAX_QUOTED_CHARS = 200

REJECTION_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "line": pl.Int64(),
    "column": pl.String(),
    "rule": pl.String(),
    "value": pl.String(),
    "fix": pl.String(),
    "level": pl.String(),
    "entity": pl.String(),
}


@dataclass(frozen=True)
class Rejection:
    """One rejection; `line` is the file's physical line (the header is line 1).

    `entity` is the roster table the row was meant for (students, staff, …): in a OneRoster
    upload one file (users.csv) feeds several, so the file alone does not say.
    """

    file: str
    line: int | None
    column: str | None
    rule: str
    value: str | None
    fix: str
    level: str = "row"
    entity: str | None = None


class UploadRejected(Exception):
    """The upload as a whole cannot be applied; carries the reasons for the LEA's report."""

    def __init__(self, rejections: list[Rejection]) -> None:
        self.rejections = rejections
        super().__init__("; ".join(f"{r.file} line {r.line}: {r.rule}" for r in rejections))


def rejection_frame(rows: Iterable[Rejection] = ()) -> pl.DataFrame:
    return pl.DataFrame([asdict(r) for r in rows], schema=REJECTION_SCHEMA)


def capped(rejections: pl.DataFrame) -> pl.DataFrame:
    """The rejections with every value and column name at most MAX_QUOTED_CHARS characters: a
    longer one keeps its start and says how long it was ("MMM…(1,048,576 characters)")."""
    quoted = ("column", "value")
    too_long = [c for c in quoted if rejections.select(_too_long(c).any()).item()]
    if not too_long:
        return rejections
    return rejections.with_columns(
        pl.col(c).map_elements(_shortened, return_dtype=pl.String) for c in too_long
    )


def _too_long(column: str) -> pl.Expr:
    return pl.col(column).str.len_chars() > MAX_QUOTED_CHARS


def _shortened(text: str) -> str:
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    length = f"…({len(text):,} characters)"
    return text[: MAX_QUOTED_CHARS - len(length)] + length
