"""Text the LEA controls (file names, headers, values) comes back to it in the rejections CSV
and the sync report, and its file names reach Dagster's metadata: everywhere it is shown,
never acted on. No formula runs when a registrar opens the CSV in Excel, no link or HTML is
live in the report, and a huge value is cut to a readable length, through the real pipeline."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rostering_pipeline_tests.conftest import Pipeline
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
