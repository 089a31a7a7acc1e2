"""Each rule of UPLOAD_SPEC.md, fed a file that breaks it, rejects exactly that row."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline.upload_spec.files import STUDENTS
from rostering_pipeline.upload_spec.reading import read_upload_file
from rostering_pipeline.upload_spec.rejections import UploadRejected
from rostering_pipeline.upload_spec.validate import validate_upload
from rostering_pipeline_tests.uploads import day_one

UPLOAD_DATE = date(2026, 9, 1)
LEA = "101912"
HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id"


def _with(file: str, text: str, lea_id: str = LEA) -> dict[str, bytes]:
    files = {k: v.encode() for k, v in day_one().items()}
    files[file] = text.encode() if isinstance(text, str) else text
    return files


def _rows(rejections: pl.DataFrame) -> list[tuple]:
    return (
        rejections.filter(pl.col("level") == "row")
        .select("file", "line", "column", "rule", "value")
        .rows()
    )


def test_clean_upload_has_no_rejections() -> None:
    result = validate_upload(LEA, _with("students.csv", day_one()["students.csv"]), UPLOAD_DATE)

    assert result.accepted
    assert result.rejections.is_empty()
    assert result.tables["students"].height == 3


@pytest.mark.parametrize(
    ("row", "column", "rule"),
    [
        ("S 1,Luz,Peña,2016-03-04,04,101912001", "student_id", "student_id must be 1–32 letters, digits, '-' or '_'"),
        ("S9,,Peña,2016-03-04,04,101912001", "first_name", "a required value is missing"),
        ("S9,Luz,Peña,2016-02-30,04,101912001", "birth_date", "birth_date must be a date written YYYY-MM-DD, MM/DD/YYYY or M/D/YYYY"),
        ("S9,Luz,Peña,2027-01-01,04,101912001", "birth_date", "birth_date must not be after the upload date"),
        ("S9,Luz,Peña,2001-01-01,12,101912001", "birth_date", "the student must be at most 22 years old on the upload date"),
        ("S9,Luz,Peña,2016-03-04,13,101912001", "grade", "grade must be one of EE, PK, KG, 01–12"),
        ("S9,Luz,Peña,2016-03-04,04,10191200", "campus_id", "campus_id must be 9 digits, the first 6 being the LEA's lea_id"),
        ("S9,Luz,Peña,2016-03-04,04,101912009", "campus_id", "campus_id must be a campus_id in campuses.csv"),
        ("S9," + "L" * 61 + ",Peña,2016-03-04,04,101912001", "first_name", "first_name must be 1–60 characters"),
    ],
)  # fmt: skip
def test_student_row_rules(row: str, column: str, rule: str) -> None:
    text = f"{HEADER}\nS1,Luz,Peña,2016-03-04,04,101912001\n{row}\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    assert _rows(result.rejections)[0][:4] == ("students.csv", 3, column, rule)
    assert result.tables["students"]["student_id"].to_list() == ["S1"]


@pytest.mark.parametrize(
    ("raw", "grade"),
    [("K", "KG"), ("1", "01"), ("9", "09"), ("Pre-K", "PK"), ("PK3", "PK"), ("pk4", "PK"), ("12", "12"), ("EE", "EE")],
)  # fmt: skip
def test_grade_aliases_are_normalised(raw: str, grade: str) -> None:
    text = f"{HEADER}\nS1,Luz,Peña,2016-03-04,{raw},101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    assert result.tables["students"]["grade"].to_list() == [grade]


@pytest.mark.parametrize("written", ["2016-03-04", "03/04/2016", "3/4/2016"])
def test_three_birth_date_forms(written: str) -> None:
    text = f"{HEADER}\nS1,Luz,Peña,{written},04,101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    assert result.tables["students"]["birth_date"].to_list() == [date(2016, 3, 4)]


def test_duplicate_ids_reject_every_occurrence() -> None:
    text = f"{HEADER}\nS1,Luz,Peña,2016-03-04,04,101912001\nS1,Max,Ortiz,2016-05-06,04,101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    assert [(r[1], r[3]) for r in _rows(result.rejections) if r[0] == "students.csv"] == [
        (2, "student_id must be unique in the file"),
        (3, "student_id must be unique in the file"),
    ]
    assert result.tables["students"].is_empty()


def test_a_pair_listed_twice_counts_once() -> None:
    enrollments = "class_id,student_id\nC1,S1\nC2,S3\nC1,S1\nC1,S2\nC2,S3\n"
    co_teachers = "class_id,staff_id\nC1,T2\nC1,T2\n"
    files = {**_with("enrollments.csv", enrollments), "co_teachers.csv": co_teachers.encode()}

    result = validate_upload(LEA, files, UPLOAD_DATE)

    assert result.rejections.filter(pl.col("level") != "warning").is_empty()
    assert result.tables["enrollments"].select("class_id", "student_id", "_line").rows() == [
        ("C1", "S1", 2),
        ("C2", "S3", 3),
        ("C1", "S2", 5),
    ]
    assert result.tables["co_teachers"].select("class_id", "staff_id", "_line").rows() == [
        ("C1", "T2", 2)
    ]


def test_emails_are_unique_ignoring_case() -> None:
    staff = (
        "staff_id,first_name,last_name,email,campus_id\n"
        "T1,Ana,Reyes,Ana.Reyes@example.org,101912001\n"
        "T2,Ben,Cole,ana.reyes@EXAMPLE.org,101912002\n"
    )

    result = validate_upload(LEA, _with("staff.csv", staff), UPLOAD_DATE)

    assert [(r[0], r[1], r[2]) for r in _rows(result.rejections)][:2] == [
        ("staff.csv", 2, "email"),
        ("staff.csv", 3, "email"),
    ]


def test_references_to_rejected_rows_are_rejected_with_the_cause() -> None:
    text = f"{HEADER}\nS1,Luz,Peña,2016-03-04,04,101912001\nS2,Max,Ortiz,2016-05-06,99,101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    enrollment = result.rejections.filter(pl.col("file") == "enrollments.csv").row(0, named=True)
    assert (enrollment["line"], enrollment["value"]) == (3, "S2")
    assert "itself rejected: see students.csv line 3" in enrollment["fix"]
    # Both rejected enrollments keep their applied version: C2/S3 names a student that is
    # absent from students.csv, and a rejected row is never read as a drop.
    assert sorted(result.rejected_keys["enrollments"].rows()) == [("C1", "S2"), ("C2", "S3")]


def test_co_teacher_who_is_the_class_teacher_is_rejected() -> None:
    files = _with("co_teachers.csv", "class_id,staff_id\nC1,T1\nC1,T2\n")

    result = validate_upload(LEA, files, UPLOAD_DATE)

    assert _rows(result.rejections) == [
        ("co_teachers.csv", 2, "staff_id", "staff_id must not be the class's own teacher_id", "T1")
    ]
    assert result.tables["co_teachers"].select("class_id", "staff_id").rows() == [("C1", "T2")]


def test_campus_of_another_lea_rejects_the_whole_upload() -> None:
    files = _with("campuses.csv", "campus_id,campus_name\n101912001,A\n227901001,B\n")

    result = validate_upload(LEA, files, UPLOAD_DATE)

    assert not result.accepted
    faults = result.rejections.filter(pl.col("level") == "upload")
    assert faults.select("file", "line", "column", "rule", "value").rows() == [
        ("campuses.csv", 3, "campus_id", "campus_id belongs to another LEA", "227901001")
    ]


def test_missing_leading_zero_is_explained() -> None:
    lea = "015901"
    files = {
        "campuses.csv": b"campus_id,campus_name\n015901001,A\n",
        "staff.csv": b"staff_id,first_name,last_name,email,campus_id\nT1,A,B,a@b.org,15901001\n",
        "students.csv": f"{HEADER}\n".encode(),
        "classes.csv": b"class_id,campus_id,class_name,teacher_id\n",
        "enrollments.csv": b"class_id,student_id\n",
    }

    result = validate_upload(lea, files, UPLOAD_DATE)

    row = result.rejections.filter(pl.col("file") == "staff.csv").row(0, named=True)
    assert (row["line"], row["column"]) == (2, "campus_id")
    assert "removed a leading zero" in row["fix"]


def test_missing_required_column_rejects_upload_and_names_sis_prefix() -> None:
    text = "STU.student_id,first_name,last_name,birth_date,grade,campus_id\nS1,A,B,2016-03-04,04,101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    assert not result.accepted
    fault = result.rejections.filter(pl.col("level") == "upload").row(0, named=True)
    assert (fault["file"], fault["column"], fault["rule"]) == (
        "students.csv",
        "student_id",
        "required column is missing",
    )
    assert "SIS table prefix" in fault["fix"]


def test_workbook_instead_of_csv_tells_lea_to_export() -> None:
    files = _with("students.csv", "")
    del files["students.csv"]
    files["students.xlsx"] = b"PK\x03\x04rest-of-workbook"

    result = validate_upload(LEA, files, UPLOAD_DATE)

    fault = result.rejections.filter(pl.col("level") == "upload").row(0, named=True)
    assert fault["rule"] == "required file is missing"
    assert "export it as CSV" in fault["fix"]


# Reading ----------------------------------------------------------------------------------


def test_bom_crlf_headers_any_case_and_order() -> None:
    data = (
        "\ufeff Campus_ID ,STUDENT_ID,first_name,Last_Name,birth_date,grade,locker\r\n"
        "101912001,00123,Luz,Peña,2016-03-04,04,17\r\n"
    ).encode()

    read = read_upload_file(STUDENTS, data)

    assert read.frame.select("student_id", "campus_id", "_line").rows() == [
        ("00123", "101912001", 2)
    ]
    assert [(w.column, w.rule) for w in read.warnings] == [("locker", "unknown column")]


def test_windows_1252_names_survive() -> None:
    data = f"{HEADER}\nS1,Luz,Peña,2016-03-04,04,101912001\n".encode("cp1252")

    read = read_upload_file(STUDENTS, data)

    assert read.frame["last_name"].to_list() == ["Peña"]


def test_quoted_line_breaks_keep_true_line_numbers() -> None:
    data = (
        f'{HEADER}\nS1,"Luz\nMaría","Peña, Jr.",2016-03-04,04,101912001\n\n'
        'S2,"Max ""Mo""",Ortiz,2016-05-06,04,101912001\n'
    ).encode()

    read = read_upload_file(STUDENTS, data)

    expected = pl.DataFrame(
        {
            "student_id": ["S1", "S2"],
            "first_name": ["Luz\nMaría", 'Max "Mo"'],
            "last_name": ["Peña, Jr.", "Ortiz"],
            "_line": [2, 5],
        }
    )
    assert_frame_equal(read.frame.select(expected.columns), expected)


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "file is empty"),
        (b"\r\n", "file is empty"),
        (b"PK\x03\x04xlsx", "file is a spreadsheet workbook, not CSV"),
        (b'student_id,first_name\n"S1,Luz\n', "file cannot be parsed as CSV"),
    ],
)
def test_unreadable_files_reject_the_upload(data: bytes, rule: str) -> None:
    with pytest.raises(UploadRejected, match=rule) as raised:
        read_upload_file(STUDENTS, data)

    assert raised.value.rejections[0].level == "upload"


def test_header_only_file_and_trailing_blank_line() -> None:
    assert read_upload_file(STUDENTS, f"{HEADER}\n".encode()).frame.height == 0
    read = read_upload_file(STUDENTS, f"{HEADER}\nS1,A,B,2016-03-04,04,101912001\n\n".encode())
    assert read.frame.select("student_id", "_line").rows() == [("S1", 2)]


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        (f"{HEADER}\rS1,A,B,2016-03-04,04,101912001\rS2,C,D,2016-03-04,04,101912001\r", [("S1", 2), ("S2", 3)]),
        (f"{HEADER}\nS1,A,B,2016-03-04,04,101912001\n,,,,,\n \nS2,C,D,2016-03-04,04,101912001", [("S1", 2), ("S2", 5)]),
        (f"{HEADER},,\nS1,A,B,2016-03-04,04,101912001,,\n", [("S1", 2)]),
        ('"student_id","first_name","last_name","birth_date","grade","campus_id"\n"S1","A","B","2016-03-04","04","101912001"\n', [("S1", 2)]),
        (f"{HEADER}\nS1,A,B,2016-03-04,04\n", [("S1", 2)]),
    ],
    ids=["CR line endings", "blank and comma-only rows skipped", "empty trailing columns", "every field quoted", "short row padded"],
)  # fmt: skip
def test_reading_variants(data: str, rows: list[tuple[str, int]]) -> None:
    read = read_upload_file(STUDENTS, data.encode())

    assert read.frame.select("student_id", "_line").rows() == rows
    assert read.warnings == []


def test_the_same_header_twice_rejects_the_upload() -> None:
    data = f"{HEADER},grade\nS1,A,B,2016-03-04,04,101912001,05\n".encode()

    with pytest.raises(UploadRejected, match="column appears twice in the header") as raised:
        read_upload_file(STUDENTS, data)

    assert (raised.value.rejections[0].line, raised.value.rejections[0].column) == (1, "grade")


@pytest.mark.parametrize(
    ("data", "rule", "line", "value"),
    [
        ("student_id\n".encode("utf-16"), "file is UTF-16 text, not UTF-8 or Windows-1252", 1, None),
        (f"{HEADER}\nS1,A,B,2016-03-04,04,101912001,x\n".encode(), "row has 7 fields but the header has 6", 2, "S1,A,B,2016-03-04,04,101912001,x"),
        (f'{HEADER}\nS1,"A,B,2016-03-04,04,101912001\nS2,A,B,2016-03-04,04,101912001\n'.encode(), "file cannot be parsed as CSV", 2, 'S1,"A,B,2016-03-04,04,101912001'),
        (f"\n{HEADER}\n".encode(), "the first line is blank", 1, None),
        (f"{HEADER}\nS1,A,B\x9d,2016-03-04,04,101912001\n".encode("latin-1"), "file cannot be decoded: it is neither UTF-8 nor Windows-1252", 2, "byte 0x9d"),
    ],
    ids=["UTF-16", "too many fields", "unterminated quote", "blank first line", "undecodable"],
)  # fmt: skip
def test_structural_faults_name_their_line(
    data: bytes, rule: str, line: int, value: str | None
) -> None:
    with pytest.raises(UploadRejected) as raised:
        read_upload_file(STUDENTS, data)

    fault = raised.value.rejections[0]
    assert (fault.rule, fault.line, fault.value, fault.level) == (rule, line, value, "upload")


def test_a_large_windows_1252_file_is_read_in_bulk() -> None:
    rows = "".join(f"S{i},Zoë,Peña,2016-03-04,04,101912001\n" for i in range(20_000))
    data = f"{HEADER}\n{rows}".encode("cp1252")

    read = read_upload_file(STUDENTS, data)

    assert read.frame.height == 20_000
    assert read.frame.row(-1, named=True)["last_name"] == "Peña"
    assert read.frame["_line"][-1] == 20_001


@pytest.mark.parametrize(
    ("upload_date", "born", "accepted"),
    [
        (date(2026, 9, 1), date(2003, 9, 2), True),
        (date(2026, 9, 1), date(2003, 9, 1), False),  # 23 on the upload date
        (date(2028, 2, 29), date(2005, 3, 1), True),
        (date(2028, 2, 29), date(2005, 2, 28), False),
        (date(2027, 2, 28), date(2004, 2, 29), True),  # a 29 February birthday falls on 1 March
        (date(2026, 9, 1), date(2026, 9, 1), True),  # EE starts at birth
    ],
)
def test_age_limit_at_its_edges(upload_date: date, born: date, accepted: bool) -> None:
    text = f"{HEADER}\nS1,Luz,Peña,{born.isoformat()},EE,101912001\n"

    result = validate_upload(LEA, _with("students.csv", text), upload_date)

    assert (result.tables["students"].height == 1) is accepted


def test_accepted_rows_are_normalised() -> None:
    staff = (
        "staff_id,first_name,last_name,email,campus_id,role\n"
        "T1,Ana,Reyes,  Ana.Reyes@Example.ORG  ,101912001,\n"
        "T2,Ben,Cole,ben.cole@example.org,101912002,Administrator\n"
    )
    students = f"{HEADER},gender\nS1,  Luz ,Peña,3/4/2016,k,101912001,f\n"
    files = _with("staff.csv", staff)
    files["students.csv"] = students.encode()

    result = validate_upload(LEA, files, UPLOAD_DATE)

    assert result.tables["staff"].select("email", "role").rows() == [
        ("ana.reyes@example.org", "teacher"),
        ("ben.cole@example.org", "administrator"),
    ]
    assert result.tables["students"].select(
        "first_name", "birth_date", "grade", "gender"
    ).rows() == [("Luz", date(2016, 3, 4), "KG", "F")]


def test_a_campus_one_zero_short_is_explained_only_for_a_zero_led_lea() -> None:
    text = f"{HEADER}\nS1,Luz,Peña,2016-03-04,04,10191200\n"

    result = validate_upload(LEA, _with("students.csv", text), UPLOAD_DATE)

    row = result.rejections.filter(pl.col("column") == "campus_id").row(0, named=True)
    assert "leading zero" not in row["fix"]
