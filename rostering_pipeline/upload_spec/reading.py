"""Turning an uploaded CSV file's bytes into a frame of text, with each row's line number."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

import polars as pl

from .files import UploadFile
from .rejections import Rejection, UploadRejected

LINE = "_line"
SIS_PREFIX = re.compile(r"^[A-Za-z]{1,4}\.(.+)$")


@dataclass
class ReadFile:
    """A parsed file: every value a string (null when blank), plus `_line` per row."""

    frame: pl.DataFrame
    warnings: list[Rejection] = field(default_factory=list)


def decode(file_name: str, data: bytes) -> str:
    """UTF-8 (BOM or not), else Windows-1252, as the spec accepts; anything else is refused."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            line = data.count(b"\n", 0, utf8_error.start) + 1
            raise _fault(
                file_name,
                line,
                None,
                "file cannot be decoded: it is neither UTF-8 nor Windows-1252",
                f"byte 0x{data[utf8_error.start]:02x}",
                "Export the file again as CSV in UTF-8.",
            ) from None


def read_upload_file(spec: UploadFile, data: bytes, *, display_name: str | None = None) -> ReadFile:
    """Parse one file of the native format; structural faults raise `UploadRejected`."""
    name = display_name or spec.file_name
    if data[:4] == b"PK\x03\x04" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise _fault(
            name,
            None,
            None,
            "file is a spreadsheet workbook, not CSV",
            None,
            "Save or export the sheet as CSV (comma delimited) and upload that file.",
        )
    text = decode(name, data)
    if not text.strip():
        raise _fault(
            name, 1, None, "file is empty", None, "Export the file again with its header row."
        )
    frame = _parse(name, text)
    frame, warnings = _match_headers(spec, name, frame)
    return ReadFile(frame, warnings)


def _parse(name: str, text: str) -> pl.DataFrame:
    """Polars parses; line numbers are arithmetic unless quoted line breaks or blank lines
    shift them, in which case the csv module (the reference parser) reads the file."""
    text = text.rstrip("\r\n") + "\n"
    plain = '"' not in text and "\n\n" not in text and "\n\r\n" not in text
    if plain:
        try:
            frame = pl.read_csv(
                io.BytesIO(text.encode("utf-8")),
                infer_schema=False,
                has_header=True,
                truncate_ragged_lines=False,
            )
        except pl.exceptions.PolarsError as error:
            raise _fault(
                name,
                None,
                None,
                "file cannot be parsed as CSV",
                str(error).splitlines()[0][:200],
                "Check that every row has the same number of commas as the header.",
            ) from None
        frame = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(LINE))
        return frame
    return _parse_with_csv_module(name, text)


def _parse_with_csv_module(name: str, text: str) -> pl.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        rows: list[list[str]] = []
        lines: list[int] = []
        start = reader.line_num + 1
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise _fault(
                        name,
                        start,
                        None,
                        f"row has {len(row)} fields but the header has {len(header)}",
                        None,
                        "Quote values that contain commas, or remove the extra commas.",
                    )
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise _fault(
            name,
            reader.line_num,
            None,
            "file cannot be parsed as CSV",
            str(error),
            'Check the quotes on this line: a value starting with " must end with ".',
        ) from None
    columns = _dedupe(header)
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    frame = pl.DataFrame(data, schema={c: pl.String for c in columns})
    return frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _dedupe(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in header:
        n = seen.get(h, 0)
        out.append(h if n == 0 else f"{h}_duplicated_{n}")
        seen[h] = n + 1
    return out


def _match_headers(
    spec: UploadFile, name: str, frame: pl.DataFrame
) -> tuple[pl.DataFrame, list[Rejection]]:
    """Headers match case- and space-insensitively in any order; unknown ones are warnings."""
    renames: dict[str, str] = {}
    warnings: list[Rejection] = []
    known = set(spec.columns)
    taken: set[str] = set()
    for raw in frame.columns:
        if raw == LINE:
            continue
        normal = raw.strip().lower()
        if normal in known and normal not in taken:
            renames[raw] = normal
            taken.add(normal)
            continue
        if normal in taken:
            raise _fault(
                name,
                1,
                raw,
                "column appears twice in the header",
                raw,
                "Keep one column of this name and delete the other.",
            )
        fix = "This column is ignored; remove it from the export if it is not needed."
        prefixed = SIS_PREFIX.match(raw.strip())
        if prefixed and prefixed.group(1).lower() in known:
            fix = (
                f"The header looks like an SIS table prefix: rename it to "
                f"'{prefixed.group(1).lower()}'."
            )
        warnings.append(Rejection(name, 1, raw, "unknown column", raw, fix, "warning"))
    missing = [c for c in spec.required_columns if c not in taken]
    if missing:
        hints = {w.value.split(".", 1)[-1].strip().lower(): w.fix for w in warnings if w.value}
        raise UploadRejected(
            [
                Rejection(
                    name,
                    1,
                    column,
                    "required column is missing",
                    None,
                    hints.get(column, f"Add the column '{column}' to the header row of {name}."),
                    "upload",
                )
                for column in missing
            ]
        )
    frame = frame.select([*[pl.col(r).alias(n) for r, n in renames.items()], LINE])
    for column in spec.columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    values = [c for c in frame.columns if c != LINE]
    frame = frame.with_columns(
        pl.col(values).str.strip_chars().replace("", None)  # trimmed; blank means absent
    )
    return frame, warnings


def _fault(
    name: str, line: int | None, column: str | None, rule: str, value: str | None, fix: str
) -> UploadRejected:
    return UploadRejected([Rejection(name, line, column, rule, value, fix, "upload")])
