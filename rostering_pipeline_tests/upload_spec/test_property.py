"""Whatever an LEA sends, validation answers with rejections, never with a crash.

Arbitrary bytes and arbitrary CSV-shaped text go in as each file of the upload; what comes
out is always a `ValidatedUpload` whose rejections are well formed, and a well-formed CSV
loses no row: each is either accepted or rejected with its line. A few examples also go
through the real pipeline, which must finish every run and give each upload a final status.
"""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rostering_pipeline.upload_spec.files import BY_FILE_NAME, STUDENTS, UPLOAD_FILES
from rostering_pipeline.upload_spec.reading import _parse_with_csv_module, read_csv_text
from rostering_pipeline.upload_spec.rejections import LEVELS, REJECTION_SCHEMA, UploadRejected
from rostering_pipeline.upload_spec.validate import ValidatedUpload, validate_upload
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.module_pipeline import shared_pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
UPLOAD_DATE = date(2026, 9, 1)
FILE_NAMES = [spec.file_name for spec in UPLOAD_FILES]
KNOWN_COLUMNS = sorted({c for spec in UPLOAD_FILES for c in spec.columns})
TRICKY = ["", " ", ",", '"', '""', "\n", "\r\n", "\r", "04", "K", "2016-03-04", "3/4/2016",
          "101912001", "S1", "T1", "C1", "Peña", "\ufeff", "\x00", "a@b.org", "x" * 70]  # fmt: skip

text_values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=24))
header_names = st.one_of(st.sampled_from(KNOWN_COLUMNS), st.text(max_size=12))


@st.composite
def csv_shaped(draw: st.DrawFn, header: list[str] | None = None) -> bytes:
    """Text that looks like CSV: well quoted or naively joined, any encoding the spec
    accepts (or a stray one), LF or CRLF, with or without a BOM."""
    header = header or draw(st.lists(header_names, min_size=1, max_size=8))
    rows = draw(st.lists(st.lists(text_values, min_size=0, max_size=len(header) + 2), max_size=8))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    if draw(st.booleans()):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=ending).writerows([header, *rows])
        text = buffer.getvalue()
    else:
        text = ending.join(",".join(row) for row in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


def _check(result: ValidatedUpload, names: set[str]) -> None:
    """A clean answer: well-typed rejections, each saying where and what to do."""
    assert isinstance(result, ValidatedUpload)
    assert dict(result.rejections.schema) == REJECTION_SCHEMA
    for row in result.rejections.iter_rows(named=True):
        assert row["level"] in LEVELS
        assert row["rule"] and row["fix"], row
        assert row["file"] in names or row["file"] in BY_FILE_NAME or row["file"].endswith(".csv")
        assert row["line"] is None or row["line"] >= 1
    if result.accepted:
        assert set(result.tables) == {spec.entity for spec in UPLOAD_FILES}
    else:
        assert result.tables == {}


def _native(file: str, data: bytes) -> dict[str, bytes]:
    files = {k: v.encode() for k, v in day_one().items()}
    files[file] = data
    return files


@settings(max_examples=80, deadline=None)
@given(file=st.sampled_from(FILE_NAMES), data=st.binary(max_size=400))
def test_arbitrary_bytes_as_any_file_are_rejected_cleanly(file: str, data: bytes) -> None:
    files = _native(file, data)

    _check(validate_upload(LEA, files, UPLOAD_DATE), set(files))


@settings(max_examples=120, deadline=None)
@given(file=st.sampled_from(FILE_NAMES), data=csv_shaped())
def test_csv_shaped_text_as_any_file_is_rejected_cleanly(file: str, data: bytes) -> None:
    files = _native(file, data)

    _check(validate_upload(LEA, files, UPLOAD_DATE), set(files))


@settings(max_examples=60, deadline=None)
@given(
    columns=st.permutations(list(STUDENTS.columns)),
    rows=st.lists(st.lists(text_values, min_size=10, max_size=10), max_size=10),
)
def test_no_row_of_a_well_formed_file_is_lost(columns: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    expected_lines, line = [], 2
    for row in rows:
        writer.writerow(row)
        if any(value.strip() for value in row):
            expected_lines.append(line)
        line += (
            sum(value.count("\n") + value.count("\r") - value.count("\r\n") for value in row) + 1
        )
    files = _native("students.csv", buffer.getvalue().encode())

    result = validate_upload(LEA, files, UPLOAD_DATE)

    assert result.accepted, result.rejections
    accepted = result.tables["students"]["_line"].to_list()
    rejected = result.rejections.filter(pl.col("file") == "students.csv")["line"].to_list()
    assert set(expected_lines) == set(accepted) | set(rejected)
    assert not set(accepted) & set(rejected)


@settings(max_examples=200, deadline=None)
@given(data=csv_shaped(header=["a", "b", "c"]))
def test_fast_reading_agrees_with_the_reference_reader(data: bytes) -> None:
    try:
        header, fast = read_csv_text("f.csv", data)
    except UploadRejected:
        return
    text = data.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    try:
        reference_text = text.decode("utf-8")
    except UnicodeDecodeError:
        reference_text = text.decode("cp1252")
    ref_header, reference = _parse_with_csv_module("f.csv", reference_text)
    values = [c for c in reference.columns if c != "_line"]
    reference = reference.with_columns(pl.col(values).str.strip_chars().replace("", None))
    reference = reference.filter(pl.any_horizontal(pl.col(values).is_not_null()))

    assert header == ref_header
    assert fast.rows() == reference.rows()


@settings(max_examples=50, deadline=None)
@given(
    file=st.sampled_from(sorted(oneroster_day_one())),
    data=st.one_of(st.binary(max_size=300), csv_shaped()),
    as_zip=st.booleans(),
)
def test_arbitrary_oneroster_files_are_rejected_cleanly(
    file: str, data: bytes, as_zip: bool
) -> None:
    files: dict[str, bytes] = {k: v.encode() for k, v in oneroster_day_one().items()}
    files[file] = data
    if as_zip:
        files = {"export.zip": zipped(files, "export/")}

    _check(validate_upload(LEA, files, UPLOAD_DATE), set(files) | set(oneroster_day_one()))


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06"]))
def test_arbitrary_zips_are_rejected_cleanly(data: bytes, prefix: bytes) -> None:
    files = {"export.zip": prefix + data}

    result = validate_upload(LEA, files, UPLOAD_DATE)

    _check(result, set(files))
    assert not result.accepted


def test_a_corrupted_real_zip_is_rejected_cleanly() -> None:
    good = zipped(oneroster_day_one())
    for at in range(0, len(good), max(1, len(good) // 60)):
        broken = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]
        try:
            zipfile.ZipFile(io.BytesIO(broken)).testzip()
        except Exception:  # noqa: BLE001 - only to know it really is broken
            pass
        _check(validate_upload(LEA, {"export.zip": broken}, UPLOAD_DATE), {"export.zip"})


# Through the real pipeline -----------------------------------------------------------------

LEAS = (f"40{n:04d}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with shared_pipeline(tmp_path_factory.mktemp("property")) as pipeline:
        yield pipeline


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    file=st.sampled_from(FILE_NAMES),
    data=st.one_of(st.binary(max_size=300), csv_shaped()),
)
def test_the_pipeline_finishes_every_run_and_decides_every_upload(
    shared: Pipeline, file: str, data: bytes
) -> None:
    lea = next(LEAS)
    files: dict[str, str | bytes] = {k: v.replace("101912", lea) for k, v in day_one().items()}
    files[file] = data

    shared.upload(lea, files)
    runs = shared.sync()

    assert [(r.lea_id, r.success) for r in runs] == [(lea, True)]
    status = shared.query("select status from ingest.uploads where lea_id = ?", [lea])
    assert status in ([("applied",)], [("rejected",)], [("held",)])
    assert any(n.startswith("sync_report_") for n in shared.outbox(lea))
