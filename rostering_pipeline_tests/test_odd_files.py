"""Files that are almost what the spec asks for, through the whole pipeline: two files for
one table, control characters inside values, a huge field beside a bare carriage return,
UTF-16 without a byte order mark, and semicolon or tab separated exports. Each is either
read exactly or refused with one message that says what the file is and how to fix it."""

from __future__ import annotations

import pytest

from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import STUDENTS, day_one

LEA = "101912"
CONTROL = "value contains a control character"


def _upload_faults(pipeline: Pipeline) -> list[tuple]:
    return pipeline.query(
        "select file, line, rule, value, fix from quality.rejections where level = 'upload'"
    )


def _report(pipeline: Pipeline) -> str:
    return next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))


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
