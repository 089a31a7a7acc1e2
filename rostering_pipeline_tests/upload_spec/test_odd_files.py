"""Files that are almost what the spec asks for, through the whole pipeline: two files for
one table, control characters inside values, a huge field beside a bare carriage return,
UTF-16 without a byte order mark, and semicolon or tab separated exports. Each is either
read exactly or refused with one message that says what the file is and how to fix it."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from rostering_pipeline.upload_spec.rules import may_hold_control_characters
from rostering_pipeline.upload_spec.validate import validate_upload
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped
from rostering_pipeline_tests.uploads import STUDENTS, day_one

LEA = "101912"
CONTROL = "value contains a control character"


def _upload_faults(pipeline: Pipeline) -> list[tuple]:
    return pipeline.query(
        "select file, line, rule, value, fix from quality.rejections where level = 'upload'"
    )


def _report(pipeline: Pipeline) -> str:
    return next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))


@pytest.mark.parametrize("other", ["Students.csv", "STUDENTS.CSV", " students.csv"])
def test_two_files_for_one_table_reject_the_upload_naming_both(
    pipeline: Pipeline, other: str
) -> None:
    files: dict[str, str | bytes] = {**day_one(), other: STUDENTS.replace("S3,", "S9,")}
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    [(file, line, rule, value, fix)] = _upload_faults(pipeline)
    assert rule == "the upload holds more than one file for one table"
    assert other in value and "students.csv" in value and other in file
    assert "Send one file per table" in fix
    assert pipeline.query("select count(*) from roster.students") == [(0,)]
    assert "Rejected: nothing was applied" in _report(pipeline)


def test_two_oneroster_files_for_one_table_reject_the_upload(pipeline: Pipeline) -> None:
    files: dict[str, str | bytes] = {**oneroster_day_one()}
    files["Users.csv"] = files["users.csv"]
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    faults = _upload_faults(pipeline)
    assert [(f[2], f[3]) for f in faults] == [
        ("the upload holds more than one file for one table", "Users.csv, users.csv")
    ]
    assert "Send one file per table" in faults[0][4]


def test_two_members_of_a_zip_for_one_table_reject_the_upload(pipeline: Pipeline) -> None:
    files: dict[str, str | bytes] = {**oneroster_day_one()}
    files["export/USERS.CSV"] = files["users.csv"]
    pipeline.upload(LEA, {"oneroster.zip": zipped(files)})

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    [(file, _, rule, value, fix)] = _upload_faults(pipeline)
    assert (file, rule) == ("oneroster.zip", "the .zip holds two files of the same name")
    assert value == "users.csv, export/USERS.CSV"
    assert "Send one file per table" in fix


def test_control_characters_inside_values_reject_the_row(pipeline: Pipeline) -> None:
    files: dict[str, str | bytes] = {**day_one()}
    files["students.csv"] = (
        "student_id,first_name,last_name,birth_date,grade,campus_id,home_language\n"
        "S1,Luz,Peña,2016-03-04,04,101912001,Spanish\tfirst\n"  # a tab is allowed
        "S2,\x00,Ortiz,2016-05-06,04,101912001,\n"
        "S3,Ivy,Ng\x1buyen,2013-07-08,07,101912002,\n"
    )
    files["campuses.csv"] = (
        'campus_id,campus_name\n101912001,"Lamar\nElementary"\n101912002,Travis Middle\n'  # a line break inside a quoted value is allowed
    )
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query(
        'select file, line, "column", rule, value, level from quality.rejections'
        " where rule = ? order by line",
        [CONTROL],
    ) == [
        ("students.csv", 3, "first_name", CONTROL, "\\x00", "row"),
        ("students.csv", 4, "last_name", CONTROL, "Ng\\x1buyen", "row"),
    ]
    assert pipeline.query("select student_id from roster.students") == [("S1",)]
    assert pipeline.query("select campus_name from roster.campuses order by 1") == [
        ("Lamar\nElementary",),
        ("Travis Middle",),
    ]
    report = _report(pipeline)
    assert CONTROL in report and "\x00" not in report and "\x1b" not in report
    csv_text = next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("rejections_"))
    assert "\x00" not in csv_text


def test_control_characters_in_a_oneroster_value_name_its_file_and_column() -> None:
    files = oneroster_day_one()
    files["users.csv"] = files["users.csv"].replace(",Max,Ortiz,", ",Max\x01,Ortiz,")

    result = validate_upload(LEA, {k: v.encode() for k, v in files.items()}, date(2026, 9, 1))

    rows = result.rejections.filter(pl.col("rule") == CONTROL)
    assert rows.select("file", "column", "value", "level").rows() == [
        ("users.csv", "givenName", "Max\\x01", "row")
    ]
    assert "S2" not in result.tables["students"]["student_id"].to_list()


def test_a_field_over_128_kb_beside_a_bare_carriage_return_is_read(pipeline: Pipeline) -> None:
    notes = "n" * 200_000
    files: dict[str, str | bytes] = {**day_one()}
    files["students.csv"] = (
        "student_id,first_name,last_name,birth_date,grade,campus_id,notes\n"
        f'S1,Luz,Peña,2016-03-04,04,101912001,"{notes}"\n'
        'S2,Max,Ortiz,2016-05-06,04,101912001,"first\rsecond"\n'
        "S3,Ivy,Nguyen,2013-07-08,07,101912002,\n"
    )
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert pipeline.query("select file, rule, level from quality.rejections") == [
        ("students.csv", "unknown column", "warning")
    ]
    assert pipeline.query("select student_id from roster.students order by 1") == [
        ("S1",),
        ("S2",),
        ("S3",),
    ]


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (STUDENTS.encode("utf-16-le"), "file is UTF-16 text without a byte order mark"),
        (STUDENTS.encode("utf-16-be"), "file is UTF-16 text without a byte order mark"),
        (STUDENTS.replace(",", ";").encode(), "values are separated by semicolons, not commas"),
        (STUDENTS.replace(",", "\t").encode(), "values are separated by tabs, not commas"),
    ],
    ids=["UTF-16 LE", "UTF-16 BE", "semicolons", "tabs"],
)
def test_a_file_in_another_encoding_or_delimiter_is_named_once(
    pipeline: Pipeline, data: bytes, rule: str
) -> None:
    files: dict[str, str | bytes] = {**day_one(), "students.csv": data}
    pipeline.upload(LEA, files)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select status from ingest.uploads") == [("rejected",)]
    [(file, line, found, _, fix)] = _upload_faults(pipeline)
    assert (file, line, found) == ("students.csv", 1, rule)
    assert "CSV" in fix and "comma" in fix and "UTF-8" in fix
    assert rule in _report(pipeline)


@pytest.mark.parametrize(
    ("name", "encoding", "may"),
    [
        ("I\tvy", "utf-8", False),
        ("I\u00a0vy", "utf-8", False),  # a no-break space starts with byte 0xC2, as C1 does
        ("Iñvy", "cp1252", False),
        ("I\x00vy", "utf-8", True),
        ("I\x7fvy", "utf-8", True),
        ("I\x85vy", "utf-8", True),  # NEL, a C1 control
    ],
    ids=["tab", "UTF-8 no-break space", "Windows-1252", "NUL", "DEL", "C1"],
)
def test_values_are_searched_for_control_characters_only_when_a_byte_could_be_one(
    name: str, encoding: str, may: bool
) -> None:
    students = STUDENTS.replace("Ivy", name).encode(encoding)
    files = {**{k: v.encode() for k, v in day_one().items()}, "students.csv": students}

    result = validate_upload(LEA, files, date(2026, 9, 1))

    assert may_hold_control_characters(students) is may
    found = result.rejections.filter(pl.col("rule") == CONTROL)["line"].to_list()
    assert found == ([4] if may else [])
