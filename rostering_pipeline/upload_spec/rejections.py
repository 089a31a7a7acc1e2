"""The shape of a rejection: what an LEA is told about one bad row, file or upload."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import polars as pl

#: `row`: the row is skipped; `upload`: nothing of the upload is applied; `warning`: applied anyway.
LEVELS = ("row", "upload", "warning")

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
