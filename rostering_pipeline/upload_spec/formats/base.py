"""What every input format gives the rules: an upload read into the native tables.

A format recognises its uploads by their files, reads them into the six native tables of
UPLOAD_SPEC.md (values still text, each row with the `_line` of the row it came from), and
names the rules' rejections in its own files and columns. The rules themselves are the same
for every format; a format says only what its IDs look like and which native columns it may
leave blank (its `Dialect`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import polars as pl

from ..archive import DEFAULT_LIMITS, ZipLimits
from ..reading import LINE
from ..rejections import REJECTION_SCHEMA, Rejection, rejection_frame
from ..rules import NATIVE, Dialect

#: A row the format itself rejected while mapping: `entity` and `_line` say which native row
#: (so it is left out and never read as a drop); the rest is the rejection as the LEA sees it.
FORMAT_REJECTION_SCHEMA: dict[str, pl.DataType] = {
    **REJECTION_SCHEMA,
    LINE: pl.Int64(),
    "native_column": pl.String(),
}


def format_rejections(rows: list[dict] | None = None) -> pl.DataFrame:
    return pl.DataFrame(rows or [], schema=FORMAT_REJECTION_SCHEMA)


def more_than_one_file(names: list[str]) -> Rejection:
    """Two files that are one table to the reader (`Students.csv` and `students.csv`): which
    one the LEA meant cannot be known, so neither is read and the upload is refused."""
    shown = ", ".join(sorted(names))
    return Rejection(
        shown,
        None,
        None,
        "the upload holds more than one file for one table",
        shown,
        "Send one file per table: file names are matched ignoring capitals and surrounding "
        f"spaces, so {shown} are the same table. Keep one of them and upload again.",
        "upload",
    )


@dataclass(frozen=True)
class ReadOptions:
    """What reading an upload may depend on besides its files (per-LEA settings included)."""

    lea_id: str
    upload_date: date
    class_types: tuple[str, ...]  # the OneRoster class types that create classes
    zip_limits: ZipLimits = DEFAULT_LIMITS


def _same(rejections: pl.DataFrame) -> pl.DataFrame:
    return rejections


@dataclass
class ReadUpload:
    """An upload as its format read it; `tables` is None when it is refused as a whole."""

    format: str
    tables: dict[str, pl.DataFrame] | None
    notes: pl.DataFrame = field(default_factory=rejection_frame)
    rejected_rows: pl.DataFrame = field(default_factory=format_rejections)
    dialect: Dialect = NATIVE
    #: Renames the rules' rejections (native files and columns) to the format's own.
    name_sources: Callable[[pl.DataFrame], pl.DataFrame] = _same


class Format(Protocol):
    """An input format: one module under `formats/`, listed in `formats.FORMATS`."""

    name: str
    #: What the sync report says about the format before listing problems (None: nothing).
    report_note: str | None
    #: The format's own files, in the order the report lists their problems.
    file_names: tuple[str, ...]

    def claims(self, files: Mapping[str, bytes]) -> bool:
        """True when these files are an upload of this format."""

    def read(self, files: Mapping[str, bytes], options: ReadOptions) -> ReadUpload:
        """The upload as native tables, or refused as a whole with its reasons in `notes`."""
