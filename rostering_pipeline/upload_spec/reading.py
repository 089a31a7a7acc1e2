"""Turning an uploaded CSV file's bytes into a frame of text, with each row's line number.

Polars parses every file that it can; the csv module (the reference parser) takes over only
where polars cannot give exact line numbers or a precise error, so a million-row file reads
in well under a second and a broken one is still explained line by line.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from dataclasses import dataclass, field

import polars as pl

from .files import UploadFile
from .rejections import Rejection, UploadRejected

LINE = "_line"
SIS_PREFIX = re.compile(r"^[A-Za-z]{1,4}\.(.+)$")
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
EXPORT_AGAIN = "Export the file again as CSV in UTF-8."
EXPORT_AS_CSV = (
    "Export the file again as CSV: comma separated, in UTF-8 (in Excel: Save As, "
    "'CSV UTF-8 (Comma delimited)')."
)
#: Separators a spreadsheet or SIS writes instead of commas (a European locale's CSV, a
#: "text" or "Unicode text" export), and how the LEA knows them.
OTHER_SEPARATORS = {b";": "semicolons", b"\t": "tabs", b"|": "vertical bars (|)"}


@dataclass
class ReadFile:
    """A parsed file: every value a string (null when blank), plus `_line` per row."""

    frame: pl.DataFrame
    warnings: list[Rejection] = field(default_factory=list)


def read_upload_file(spec: UploadFile, data: bytes, *, display_name: str | None = None) -> ReadFile:
    """Parse one CSV file named by `spec`; structural faults raise `UploadRejected`."""
    name = display_name or spec.file_name
    header, frame = read_csv_text(name, data)
    frame, warnings = _match_headers(spec, name, header, frame)
    return ReadFile(frame, warnings)


def read_csv_text(name: str, data: bytes) -> tuple[list[str], pl.DataFrame]:
    """The header as written, and the rows with columns named by position ("0", "1", …).

    Values are trimmed and blank ones are null; rows that are blank throughout (blank lines,
    or the `,,,,` a spreadsheet leaves below its data) are skipped.
    """
    if data.startswith(WORKBOOK_MAGIC):
        raise _fault(
            name,
            None,
            None,
            "file is a spreadsheet workbook, not CSV",
            None,
            "Save or export the sheet as CSV (comma delimited) and upload that file.",
        )
    if data.startswith(UTF16_BOMS):
        raise _fault(
            name, 1, None, "file is UTF-16 text, not UTF-8 or Windows-1252", None, EXPORT_AS_CSV
        )
    if _utf16_without_bom(data):
        raise _fault(
            name, 1, None, "file is UTF-16 text without a byte order mark", None, EXPORT_AS_CSV
        )
    data = data.removeprefix(UTF8_BOM)
    if not data or data.isspace():
        raise _fault(
            name, 1, None, "file is empty", None, "Export the file again with its header row."
        )
    _refuse_other_separators(name, data)
    header, frame = _parse(name, _one_final_line_break(data))
    values = [c for c in frame.columns if c != LINE]
    frame = frame.with_columns(pl.col(values).str.strip_chars().replace("", None))
    frame = frame.filter(pl.any_horizontal(pl.col(values).is_not_null()))
    return header, frame


def _utf16_without_bom(data: bytes) -> bool:
    """A NUL at (nearly) every other byte: text such as a header row in UTF-16, little- or
    big-endian. UTF-8 allows NULs, so without this the file would be read as a header of odd
    names and refused for every required column instead."""
    sample = data[:4096]
    if len(sample) < 4:
        return False
    return any(half.count(0) > 0.7 * len(half) for half in (sample[1::2], sample[0::2]))


def _refuse_other_separators(name: str, data: bytes) -> None:
    """A header row without a comma but with semicolons, tabs or bars is another export than
    CSV: one message saying so, rather than a missing column for every column."""
    first = re.split(rb"[\r\n]", data[:65536], maxsplit=1)[0]
    if b"," in first:
        return
    counts = {sep: first.count(sep) for sep in OTHER_SEPARATORS}
    separator = max(counts, key=lambda sep: counts[sep])
    if counts[separator]:
        raise _fault(
            name,
            1,
            None,
            f"values are separated by {OTHER_SEPARATORS[separator]}, not commas",
            first[:200].decode("utf-8", "replace"),
            EXPORT_AS_CSV,
        )


def _one_final_line_break(data: bytes) -> bytes:
    """The file ending in exactly one line break, so that a ragged last row is refused like
    every other one and blank lines at the end count for nothing. A file that already ends
    so (nearly every export) is not copied here: a large one is hundreds of megabytes."""
    end = len(data)
    while end and data[end - 1] in b"\r\n":
        end -= 1
    if data[end:] in (b"\n", b"\r\n"):
        return data
    return data[:end] + b"\n"


def decode(file_name: str, data: bytes) -> str:
    """UTF-8, else Windows-1252, as the spec accepts; anything else is refused."""
    try:
        return data.decode("utf-8")
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
                EXPORT_AGAIN,
            ) from None


def _parse(name: str, data: bytes) -> tuple[list[str], pl.DataFrame]:
    """UTF-8 is parsed as it is (polars checks it); Windows-1252 is transcoded first.

    `data` ends in one line break (see `_one_final_line_break`)."""
    parsed = _try_polars(data) if _first_line_is_utf8(data) else None
    if parsed is not None:
        return parsed
    text = decode(name, data)
    utf8 = text.encode("utf-8")
    if utf8 != data:
        parsed = _try_polars(utf8)
    if parsed is not None:
        return parsed
    return _parse_with_csv_module(name, text)


def _try_polars(data: bytes) -> tuple[list[str], pl.DataFrame] | None:
    try:
        return _parse_with_polars(data)
    except pl.exceptions.PolarsError:
        return None


def _first_line_is_utf8(data: bytes) -> bool:
    end = data.find(b"\n")
    try:
        data[: end if end >= 0 else len(data)].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_with_polars(data: bytes) -> tuple[list[str], pl.DataFrame] | None:
    """None when polars' reading might differ from the csv module's: quoted line breaks in
    the header, bare carriage returns, or a line count that does not add up."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    end = data.find(b"\n")
    header = _header(data[: end if end >= 0 else len(data)])
    if header is None:
        return None
    frame = pl.read_csv(data, infer_schema=False, has_header=True, raise_if_empty=False)
    if frame.width != len(header):
        return None
    frame.columns = [str(i) for i in range(len(header))]
    physical_lines = data.count(b"\n")
    row = pl.int_range(2, frame.height + 2, dtype=pl.Int64)
    if b'"' not in data:
        if physical_lines != frame.height + 1:
            return None
        return header, frame.with_columns(row.alias(LINE))
    # A quoted value with line breaks spans lines: each row starts after the breaks above it.
    breaks = pl.sum_horizontal(pl.all().str.count_matches("\n", literal=True).fill_null(0))
    frame = frame.with_columns(breaks.cast(pl.Int64).alias("_breaks"))
    if physical_lines != frame.height + 1 + frame["_breaks"].sum():
        return None
    line = row + pl.col("_breaks").cum_sum() - pl.col("_breaks")
    return header, frame.with_columns(line.alias(LINE)).drop("_breaks")


def _header(first_line: bytes) -> list[str] | None:
    try:
        return next(csv.reader([first_line.decode("utf-8").rstrip("\r")], strict=True))
    except (csv.Error, StopIteration, UnicodeDecodeError):
        return None


_FIELD_LIMIT_LOCK = threading.Lock()


def _allow_fields_as_long_as(text: str) -> None:
    """Let the csv module read a field as long as the whole file.

    Its default limit (128 KB) would refuse a valid file with one long value as a quoting
    fault. No field is longer than its file, and a file is at most ROSTERING_MAX_FILE_BYTES
    (it is refused before download otherwise), so this bounds nothing that matters. The
    limit is process-wide: only ever raised, under a lock, so a parse in another thread never
    sees it lowered."""
    with _FIELD_LIMIT_LOCK:
        if csv.field_size_limit() <= len(text):
            csv.field_size_limit(len(text) + 1)


def _parse_with_csv_module(name: str, text: str) -> tuple[list[str], pl.DataFrame]:
    """The reference reading, and the exact place of any fault in the file's structure."""
    _allow_fields_as_long_as(text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        header = next(reader)
        if not header:
            raise _fault(
                name,
                1,
                None,
                "the first line is blank",
                None,
                "Put the header row on the first line of the file.",
            )
        start = reader.line_num + 1
        for row in reader:
            if len(row) > len(header):
                raise _fault(
                    name,
                    start,
                    None,
                    f"row has {len(row)} fields but the header has {len(header)}",
                    _line_text(text, start),
                    "Quote values that contain commas, or remove the extra commas.",
                )
            rows.append(row + [""] * (len(header) - len(row)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error:
        raise _fault(
            name,
            start,
            None,
            "file cannot be parsed as CSV",
            _line_text(text, start),
            'Check the quotes from this line on: a value that starts with " must end with " '
            'before the next comma, and a " inside a quoted value is written twice ("").',
        ) from None
    columns = [str(i) for i in range(len(header))]
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    frame = pl.DataFrame(data, schema={c: pl.String for c in columns})
    return header, frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _line_text(text: str, line: int) -> str:
    """The physical line as the LEA wrote it, to quote in the rejection (validate_upload caps
    what a rejection quotes)."""
    found = text.splitlines()[line - 1 : line]
    return found[0] if found else ""


def _match_headers(
    spec: UploadFile, name: str, header: list[str], frame: pl.DataFrame
) -> tuple[pl.DataFrame, list[Rejection]]:
    """Headers match case- and space-insensitively in any order; unknown ones are warnings."""
    known = {c.lower(): c for c in spec.columns}
    taken: dict[str, int] = {}
    warnings: list[Rejection] = []
    for position, raw in enumerate(header):
        column = known.get(raw.strip().lower())
        if column is not None and column in taken:
            raise _fault(
                name,
                1,
                raw,
                "column appears twice in the header",
                raw,
                "Keep one column of this name and delete the other.",
            )
        if column is not None:
            taken[column] = position
            continue
        if not raw.strip() and frame.get_column(str(position)).null_count() == frame.height:
            continue  # a spreadsheet's empty trailing column
        warnings.append(_unknown_column(name, raw, known))
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
                    hints.get(
                        column.lower(), f"Add the column '{column}' to the header row of {name}."
                    ),
                    "upload",
                )
                for column in missing
            ]
        )
    frame = frame.select(
        *[pl.col(str(p)).alias(c) for c, p in taken.items()],
        *[pl.lit(None, dtype=pl.String).alias(c) for c in spec.columns if c not in taken],
        LINE,
    )
    return frame, warnings


def _unknown_column(name: str, raw: str, known: dict[str, str]) -> Rejection:
    fix = "This column is ignored; remove it from the export if it is not needed."
    prefixed = SIS_PREFIX.match(raw.strip())
    if prefixed and prefixed.group(1).lower() in known:
        fix = (
            "The header looks like an SIS table prefix: rename it to "
            f"'{known[prefixed.group(1).lower()]}'."
        )
    return Rejection(name, 1, raw, "unknown column", raw, fix, "warning")


def _fault(
    name: str, line: int | None, column: str | None, rule: str, value: str | None, fix: str
) -> UploadRejected:
    return UploadRejected([Rejection(name, line, column, rule, value, fix, "upload")])
