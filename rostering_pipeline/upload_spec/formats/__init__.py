"""The input formats an upload may come in, tried in order; the first that claims it reads it.

Adding a format is one module here (a class with `name`, `report_note`, `claims` and `read`,
see `base.Format`) plus its entry in `FORMATS`, and its tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .base import Format, ReadOptions, ReadUpload
from .foreign import ForeignFormat
from .native import NativeFormat
from .oneroster import OneRosterFormat

FORMATS: tuple[Format, ...] = (ForeignFormat(), OneRosterFormat(), NativeFormat())


def format_of(files: Mapping[str, bytes]) -> Format:
    return next(f for f in FORMATS if f.claims(files))


def read_upload(files: Mapping[str, bytes], options: ReadOptions) -> ReadUpload:
    return format_of(files).read(files, options)


def format_named(file_names: Iterable[str]) -> Format:
    """The format of an upload with these files, told by their names alone (for the report,
    which has the upload's file list, not its contents)."""
    return format_of({name: b"" for name in file_names})


__all__ = [
    "FORMATS", "Format", "ReadOptions", "ReadUpload", "format_named", "format_of", "read_upload",
]  # fmt: skip
