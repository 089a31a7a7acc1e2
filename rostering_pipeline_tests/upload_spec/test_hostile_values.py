"""Text the LEA controls (file names, headers, values) comes back to it in the rejections CSV
and the sync report, and its file names reach Dagster's metadata: everywhere it is shown,
never acted on. No formula runs when a registrar opens the CSV in Excel, no link or HTML is
live in the report, and a huge value is cut to a readable length, through the real pipeline."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import dagster as dg
from markdown_it import MarkdownIt

from rostering_pipeline.markdown_text import LINK_BREAK
from rostering_pipeline.upload_spec.rejections import Rejection, capped, rejection_frame
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.report.test_markdown_text import _as_html_text
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"
STUDENTS_HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id,gender"


def _outbox_file(pipeline: Pipeline, prefix: str) -> str:
    """Read as bytes: Path.read_text would turn a carriage return into a line break."""
    [path] = (pipeline.sftp_root / LEA / "outbox").glob(f"{prefix}*")
    return Path(path).read_bytes().decode("utf-8")


# --- formulas in the rejections CSV (OWASP CSV injection) ---------------------------------

FORMULA_FILE = "=HYPERLINK(1).csv"


def _formula_upload() -> dict[str, str]:
    files = day_one()
    files["students.csv"] = (
        f'{STUDENTS_HEADER},"\t=1+2","\r=3"\n'
        'S1,Luz,Peña,2016-03-04,"=1+2",101912001,F,,\n'
        "S2,Max,Ortiz,\"+cmd|' /C calc'!A0\",04,101912001,M,,\n"
        'S3,Ivy,Nguyen,2013-07-08,07,"-2+3",F,,\n'
        'S4,Eli,Park,2016-09-10,04,101912001,"@SUM(1,2)",,\n'
    )
    files[FORMULA_FILE] = "a\n1\n"
    return files


def test_rejections_csv_neutralises_formulas_and_the_warehouse_keeps_the_values(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, _formula_upload())

    assert [r.success for r in pipeline.sync()] == [True]

    rows = list(csv.DictReader(io.StringIO(_outbox_file(pipeline, "rejections_"), newline="")))
    cells = [cell for row in rows for column, cell in row.items() if column != "line"]
    assert [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")] == []
    shown = {(r["file"], r["column"], r["value"]) for r in rows}
    assert {
        ("students.csv", "grade", "'=1+2"),
        ("students.csv", "birth_date", "'+cmd|' /C calc'!A0"),
        ("students.csv", "campus_id", "'-2+3"),
        ("students.csv", "gender", "'@SUM(1,2)"),
        ("students.csv", "'\t=1+2", "'\t=1+2"),
        ("students.csv", "'\r=3", "'\r=3"),
    } <= shown
    assert f"'{FORMULA_FILE}" in {r["file"] for r in rows}
    stored = set(pipeline.query('select file, "column", value from quality.rejections'))
    assert {
        ("students.csv", "grade", "=1+2"),
        ("students.csv", "birth_date", "+cmd|' /C calc'!A0"),
        ("students.csv", "campus_id", "-2+3"),
        ("students.csv", "gender", "@SUM(1,2)"),
        ("students.csv", "\t=1+2", "\t=1+2"),
        ("students.csv", "\r=3", "\r=3"),
        (FORMULA_FILE, None, None),
    } <= stored


# --- markdown and HTML in the sync report and Dagster's metadata --------------------------

HOSTILE_FILE = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) | ## x `*b*` _i_.csv"
HOSTILE_HEADERS = ["[click](http://evil.example)", "<b>| ## x</b>"]
HOSTILE_VALUES = {
    "grade": "<img src=x onerror=alert(1)>",
    "gender": "[click](http://evil.example)",
    "birth_date": "| ## x `*b*` _i_ ~~s~~ &amp; www.evil.example",
}
#: Tags the report's own markdown makes; any other tag came from the LEA's text.
REPORT_TAGS = {"h1", "h2", "h3", "p", "strong", "ul", "li", "code", "table", "thead", "tbody"}
REPORT_TAGS |= {"tr", "th", "td"}


def _markup_upload() -> dict[str, str]:
    files = day_one()
    header = ",".join(f'"{h}"' for h in HOSTILE_HEADERS)
    values = HOSTILE_VALUES
    files["students.csv"] = (
        f"{STUDENTS_HEADER},{header}\n"
        f'S1,Luz,Peña,"{values["birth_date"]}","{values["grade"]}",101912001,'
        f'"{values["gender"]}",,\n'
    )
    files[HOSTILE_FILE] = "a\n1\n"
    return files


def _html(markdown: str) -> str:
    """As CommonMark with GFM tables and strikethrough renders it, raw HTML passed through
    (as renderers that do not sanitise do), and the empty comment that splits bare web
    addresses and the columns' alignment taken out."""
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    return re.sub(r' style="text-align:\w+"', "", html.replace(LINK_BREAK, ""))


def test_report_shows_hostile_names_and_values_as_text(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _markup_upload())

    assert [r.success for r in pipeline.sync()] == [True]

    report = _outbox_file(pipeline, "sync_report_")
    html = _html(report)
    assert set(re.findall(r"<(\w+)", html)) <= REPORT_TAGS  # no link, image, emphasis, …
    assert "://" not in report and "www." not in report  # no bare address to link either
    name = _as_html_text(HOSTILE_FILE)
    [files] = re.findall(r"<li>Files: (.*)</li>", html)
    assert f"{name} (4 bytes)" in files.split(", ")
    assert f"<h3>Note (applied anyway): {name}: file is not part of the upload</h3>" in html
    # Each hostile text fills exactly its own cell: the table around it is whole.
    for header in HOSTILE_HEADERS:
        assert (
            f"<td>1</td>\n<td>{_as_html_text(header)}</td>\n<td>{_as_html_text(header)}</td>"
            in html
        )
    for column, value in HOSTILE_VALUES.items():
        assert f"<td>2</td>\n<td>{column}</td>\n<td>{_as_html_text(value)}</td>" in html


def test_dagster_markdown_metadata_shows_a_hostile_file_name_as_text(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _markup_upload())

    pipeline.sync()

    [record] = pipeline.instance.fetch_materializations(dg.AssetKey("raw_upload"), limit=1).records
    files = record.asset_materialization.metadata["files"]
    assert isinstance(files, dg.MarkdownMetadataValue)
    html = _html(files.md_str)
    assert set(re.findall(r"<(\w+)", html)) <= {"table", "thead", "tbody", "tr", "th", "td", "code"}
    assert f"<tr>\n<td>{_as_html_text(HOSTILE_FILE)}</td>\n<td>4</td>" in html


# --- a huge value -------------------------------------------------------------------------

MEGABYTE = 1_048_576


def test_a_huge_value_is_capped_in_the_warehouse_the_report_and_the_csv(
    pipeline: Pipeline,
) -> None:
    files = day_one()
    files["students.csv"] = files["students.csv"].replace("S2,Max,", f"S2,{'M' * MEGABYTE},")
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    capped = "M" * 177 + "…(1,048,576 characters)"
    assert len(capped) == 200
    assert pipeline.query(
        "select line, value from quality.rejections where \"column\" = 'first_name'"
    ) == [(3, capped)]
    report = _outbox_file(pipeline, "sync_report_")
    assert f"| 3 | first_name | {capped} |" in report and len(report) < 10_000
    listed = _outbox_file(pipeline, "rejections_")
    rows = list(csv.DictReader(io.StringIO(listed, newline="")))
    assert [r["value"] for r in rows if r["column"] == "first_name"] == [capped]
    assert len(listed) < 10_000


def test_capping_shortens_long_values_and_column_names_only_and_only_once() -> None:
    long_header = "h" * 300
    rejections = rejection_frame(
        [
            Rejection("students.csv", 1, long_header, "unknown column", long_header, "fix"),
            Rejection("students.csv", 2, "grade", "rule", "x" * 200, "fix"),
            Rejection("students.csv", 3, None, "rule", None, "fix"),
        ]
    )

    result = capped(rejections)

    shortened = "h" * 183 + "…(300 characters)"
    assert result["column"].to_list() == [shortened, "grade", None]
    assert result["value"].to_list() == [shortened, "x" * 200, None]
    assert capped(result).equals(result)
