"""Every rule of UPLOAD_SPEC.md broken once, through the real pipeline.

All uploads go into one SFTP server, one `sync` runs them (one LEA per upload, one run per
LEA), and each case then asserts the exact file, line, column and rule that
quality.rejections recorded, while the good rows of the same upload were applied. Row faults
of one kind of record share an LEA (each on its own line, breaking one rule); faults that
stop a whole upload are grouped only where each file is read on its own.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from dagster._serdes import serialize_value

from rostering_demo.generator import INJECTION_DETAILS, LeaSpec, generate_upload
from rostering_pipeline.upload_spec.formats.oneroster_tables import NO_PRIMARY
from rostering_pipeline.upload_spec.hints import LEADING_ZERO, RESAVED_DATE
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.module_pipeline import shared_pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_for as oneroster
from rostering_pipeline_tests.oneroster_uploads import zipped
from rostering_pipeline_tests.uploads import day_one

REQUIRED = "a required value is missing"
DATE_FORM = "birth_date must be a date written YYYY-MM-DD, MM/DD/YYYY or M/D/YYYY"
CAMPUS_FORM = "campus_id must be 9 digits, the first 6 being the LEA's lea_id"
LOCAL_ID = "{} must be 1–32 letters, digits, '-' or '_'"
GRADE = "grade must be one of EE, PK, KG, 01–12"
L61, L101 = "L" * 61, "N" * 101


@dataclass(frozen=True)
class Case:
    """One bad input and the rejection it must leave in quality.rejections."""

    name: str
    lea: str
    file: str
    line: int | None
    column: str | None
    rule: str
    level: str = "row"
    fix_says: str = ""

    def __str__(self) -> str:
        return self.name


def native(lea: str, **files: str | bytes) -> dict[str, str | bytes]:
    """day_one's upload moved to `lea`, with some files replaced (None: left out). Staff
    emails get the LEA's own domain: a login another LEA holds would be a rejection too."""
    upload: dict[str, str | bytes] = {k: v.replace("101912", lea) for k, v in day_one().items()}
    for name, content in files.items():
        file = name.replace("_csv", ".csv").replace("_xlsx", ".xlsx")
        if content is None:
            upload.pop(file, None)
        else:
            upload[file] = content
    return {k: _own_domain(v, lea) for k, v in upload.items()}


def _own_domain(content: str | bytes, lea: str) -> str | bytes:
    return (
        content.replace("@example.org", f"@{lea}.example.org")
        if isinstance(content, str)
        else content
    )


# -- students.csv: one fault per line -----------------------------------------------------
A = "300001"
STUDENT_HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id,state_id,middle_name,gender,home_language\n"
STUDENTS_A = STUDENT_HEADER + "\n".join(
    [
        "S1,Luz,Peña,2016-03-04,04,300001001,,,,",  # 2
        "S2,Max,Ortiz,2016-05-06,04,300001001,,,,",  # 3
        "S3,Ivy,Nguyen,2013-07-08,07,300001002,,,,",  # 4
        "S 9,Ana,Diaz,2016-01-01,04,300001001,,,,",  # 5
        "S10,Bo,Diaz,2016-01-01,04,300001001,,,,",  # 6
        "S10,Cy,Diaz,2016-01-01,04,300001001,,,,",  # 7
        "S11,Di,Diaz,2016-01-01,04,300001001,123456789,,,",  # 8
        "S12,Ed,Diaz,2016-01-01,04,300001001,1111111111,,,",  # 9
        "S13,Fa,Diaz,2016-01-01,04,300001001,1111111111,,,",  # 10
        "S14,,Diaz,2016-01-01,04,300001001,,,,",  # 11
        f"S15,{L61},Diaz,2016-01-01,04,300001001,,,,",  # 12
        f"S16,Gi,Diaz,2016-01-01,04,300001001,,{L61},,",  # 13
        "S17,Ha,,2016-01-01,04,300001001,,,,",  # 14
        "S18,Io,Diaz,2016-02-30,04,300001001,,,,",  # 15
        "S19,Jo,Diaz,2027-01-01,04,300001001,,,,",  # 16
        "S20,Ka,Diaz,2001-01-01,12,300001001,,,,",  # 17
        "S21,Lu,Diaz,2016-05-06 00:00,04,300001001,,,,",  # 18
        "S22,Mo,Diaz,2016-01-01,13,300001001,,,,",  # 19
        "S23,Ni,Diaz,2016-01-01,04,30000100,,,,",  # 20
        "S24,Ol,Diaz,2016-01-01,04,300001999,,,,",  # 21
        "S25,Pa,Diaz,2016-01-01,04,300001001,,,Q,",  # 22
        f"S26,Qu,Diaz,2016-01-01,04,300001001,,,,{'x' * 41}",  # 23
        "S27,Ro,Diaz,03/04/2016,K,300001001,,,f,",  # 24: accepted, normalised
        "S28,Sa,Diaz,3/4/2016,Pre-K,300001001,,, ,",  # 25: accepted
        'S29,"Ana, María","López\nJr.",2016-01-01,04,300001001,,,,',  # 26-27: accepted
        "S30,Te,Diaz,2016-01-01,99,300001001,,,,",  # 28: after a quoted line break
    ]
)
STUDENT_CASES = [
    Case("student_id with a space", A, "students.csv", 5, "student_id", LOCAL_ID.format("student_id")),
    Case("duplicate student_id (first)", A, "students.csv", 6, "student_id", "student_id must be unique in the file"),
    Case("duplicate student_id (repeat)", A, "students.csv", 7, "student_id", "student_id must be unique in the file"),
    Case("state_id of 9 digits", A, "students.csv", 8, "state_id", "state_id must be 10 digits"),
    Case("duplicate state_id (first)", A, "students.csv", 9, "state_id", "state_id must be unique in the file"),
    Case("duplicate state_id (repeat)", A, "students.csv", 10, "state_id", "state_id must be unique in the file"),
    Case("first_name missing", A, "students.csv", 11, "first_name", REQUIRED, fix_says="Fill in first_name"),
    Case("first_name of 61 characters", A, "students.csv", 12, "first_name", "first_name must be 1–60 characters"),
    Case("middle_name of 61 characters", A, "students.csv", 13, "middle_name", "middle_name must be up to 60 characters"),
    Case("last_name missing", A, "students.csv", 14, "last_name", REQUIRED),
    Case("birth_date not a date", A, "students.csv", 15, "birth_date", DATE_FORM),
    Case("birth_date in the future", A, "students.csv", 16, "birth_date", "birth_date must not be after the upload date"),
    Case("student older than 22", A, "students.csv", 17, "birth_date", "the student must be at most 22 years old on the upload date"),
    Case("birth_date re-saved by a spreadsheet", A, "students.csv", 18, "birth_date", DATE_FORM, fix_says=RESAVED_DATE),
    Case("grade 13", A, "students.csv", 19, "grade", GRADE),
    Case("campus_id of 8 digits", A, "students.csv", 20, "campus_id", CAMPUS_FORM),
    Case("student campus unknown", A, "students.csv", 21, "campus_id", "campus_id must be a campus_id in campuses.csv"),
    Case("gender Q", A, "students.csv", 22, "gender", "gender must be one of F, M, X"),
    Case("home_language of 41 characters", A, "students.csv", 23, "home_language", "home_language must be up to 40 characters"),
    Case("bad row after a quoted line break", A, "students.csv", 28, "grade", GRADE),
]  # fmt: skip

# -- staff.csv ----------------------------------------------------------------------------
B = "300002"
STAFF_B = "staff_id,first_name,last_name,email,campus_id,role,state_staff_id\n" + "\n".join(
    [
        "T1,Ana,Reyes,ana.reyes@example.org,300002001,,",  # 2
        "T2,Ben,Cole,ben.cole@example.org,300002002,,",  # 3
        "T 9,Al,Ruiz,al@example.org,300002001,,",  # 4
        "T10,Bea,Ruiz,bea@example.org,300002001,,",  # 5
        "T10,Cai,Ruiz,cai@example.org,300002001,,",  # 6
        "T11,,Ruiz,dee@example.org,300002001,,",  # 7
        f"T12,Eve,{L61},eve@example.org,300002001,,",  # 8
        "T13,Fay,Ruiz,not-an-email,300002001,,",  # 9
        "T14,Gus,Ruiz,Gus@Example.org,300002001,,",  # 10
        "T15,Hal,Ruiz,gus@example.ORG,300002001,,",  # 11
        "T16,Ida,Ruiz,ida@example.org,300002999,,",  # 12
        "T17,Jon,Ruiz,jon@example.org,300002001,janitor,",  # 13
        "T18,Kim,Ruiz,kim@example.org,300002001,,12345ABCDE",  # 14
        "T19,Lee,Ruiz,Lee.Ruiz@Example.org,300002001,AIDE,1234567890",  # 15: accepted
    ]
)
STAFF_CASES = [
    Case("staff_id with a space", B, "staff.csv", 4, "staff_id", LOCAL_ID.format("staff_id")),
    Case("duplicate staff_id (first)", B, "staff.csv", 5, "staff_id", "staff_id must be unique in the file"),
    Case("duplicate staff_id (repeat)", B, "staff.csv", 6, "staff_id", "staff_id must be unique in the file"),
    Case("staff first_name missing", B, "staff.csv", 7, "first_name", REQUIRED),
    Case("staff last_name of 61 characters", B, "staff.csv", 8, "last_name", "last_name must be 1–60 characters"),
    Case("email not an address", B, "staff.csv", 9, "email", "email must be a valid address"),
    Case("duplicate email ignoring case (first)", B, "staff.csv", 10, "email", "email must be unique in the file (ignoring case)"),
    Case("duplicate email ignoring case (repeat)", B, "staff.csv", 11, "email", "email must be unique in the file (ignoring case)"),
    Case("staff campus unknown", B, "staff.csv", 12, "campus_id", "campus_id must be a campus_id in campuses.csv"),
    Case("role janitor", B, "staff.csv", 13, "role", "role must be one of teacher, aide, administrator"),
    Case("state_staff_id with letters", B, "staff.csv", 14, "state_staff_id", "state_staff_id must be 10 digits"),
]  # fmt: skip

# -- classes.csv --------------------------------------------------------------------------
C = "300003"
CLASSES_C = "class_id,campus_id,class_name,teacher_id,grade,school_year\n" + "\n".join(
    [
        "C1,300003001,Grade 4 Math,T1,,",  # 2
        "C2,300003002,Grade 7 Science,T2,,",  # 3
        "C 9,300003001,Art,T1,,",  # 4
        "C10,300003001,Art,T1,,",  # 5
        "C10,300003001,Music,T1,,",  # 6
        f"C11,300003001,{L101},T1,,",  # 7
        "C12,300003001,,T1,,",  # 8
        "C13,300003001,Art,T99,,",  # 9
        "C14,300003001,Art,T3,,",  # 10
        "C15,300003001,Art,T1,ZZ,",  # 11
        "C16,300003001,Art,T1,,2026/27",  # 12
        "C17,300003999,Art,T1,,",  # 13
        "C18,300003001,Art,T2,K,2026-2027",  # 14: accepted
    ]
)
STAFF_C = day_one()["staff.csv"].replace("101912", C) + "T3,Ann,Bell,bad-email,300003001\n"
CLASS_CASES = [
    Case("teacher with a bad email", C, "staff.csv", 4, "email", "email must be a valid address"),
    Case("class_id with a space", C, "classes.csv", 4, "class_id", LOCAL_ID.format("class_id")),
    Case("duplicate class_id (first)", C, "classes.csv", 5, "class_id", "class_id must be unique in the file"),
    Case("duplicate class_id (repeat)", C, "classes.csv", 6, "class_id", "class_id must be unique in the file"),
    Case("class_name of 101 characters", C, "classes.csv", 7, "class_name", "class_name must be 1–100 characters"),
    Case("class_name missing", C, "classes.csv", 8, "class_name", REQUIRED),
    Case("class teacher unknown", C, "classes.csv", 9, "teacher_id", "teacher_id must be a staff_id in staff.csv", fix_says="Add the row to staff.csv"),
    Case("class of a rejected teacher", C, "classes.csv", 10, "teacher_id", "teacher_id must be a staff_id in staff.csv", fix_says="itself rejected: see staff.csv line"),
    Case("class grade ZZ", C, "classes.csv", 11, "grade", GRADE),
    Case("school_year 2026/27", C, "classes.csv", 12, "school_year", "school_year must be written YYYY-YYYY"),
    Case("class campus unknown", C, "classes.csv", 13, "campus_id", "campus_id must be a campus_id in campuses.csv"),
]  # fmt: skip

# -- enrollments.csv and co_teachers.csv --------------------------------------------------
D = "300004"
STUDENTS_D = (
    day_one()["students.csv"].replace("101912", D) + "S9,Zed,Diaz,2016-01-01,99,300004001\n"
)
ENROLLMENTS_D = "class_id,student_id\nC1,S1\nC1,S2\nC2,S3\nC1,S1\nC99,S1\nC1,S99\nC1,S9\n"
CO_TEACHERS_D = "class_id,staff_id\nC1,T2\nC1,T1\nC1,T99\nC99,T2\n"
PAIR_CASES = [
    Case("student with a bad grade", D, "students.csv", 5, "grade", GRADE),
    Case("enrollment in an unknown class", D, "enrollments.csv", 6, "class_id", "class_id must be a class_id in classes.csv"),
    Case("enrollment of an unknown student", D, "enrollments.csv", 7, "student_id", "student_id must be a student_id in students.csv"),
    Case("enrollment of a rejected student", D, "enrollments.csv", 8, "student_id", "student_id must be a student_id in students.csv", fix_says="itself rejected: see students.csv line"),
    Case("co-teacher who is the class's teacher", D, "co_teachers.csv", 3, "staff_id", "staff_id must not be the class's own teacher_id"),
    Case("co-teacher unknown", D, "co_teachers.csv", 4, "staff_id", "staff_id must be a staff_id in staff.csv"),
    Case("co-teacher of an unknown class", D, "co_teachers.csv", 5, "class_id", "class_id must be a class_id in classes.csv"),
]  # fmt: skip

# -- the generator's row-level injections, in a zero-led LEA --------------------------------
G = "015901"
G_SIZE = 60
INJECTED = {
    "bad_birth_date": DATE_FORM,
    "spreadsheet_date": DATE_FORM,
    "missing_leading_zero": CAMPUS_FORM,
    "bad_grade": GRADE,
    "duplicate_student_id": "student_id must be unique in the file",
    "unknown_campus": "campus_id must be a campus_id in campuses.csv",
    "bad_email": "email must be a valid address",
    "duplicate_email": "email must be unique in the file (ignoring case)",
    "class_unknown_teacher": "teacher_id must be a staff_id in staff.csv",
    "enrollment_unknown_student": "student_id must be a student_id in students.csv",
    "co_teacher_is_teacher": "staff_id must not be the class's own teacher_id",
    "unknown_column": "unknown column",
}
HINTS = {"missing_leading_zero": LEADING_ZERO, "spreadsheet_date": RESAVED_DATE}
GENERATED_CASES = [
    Case(
        f"generator: {name}",
        G,
        INJECTION_DETAILS[name].file,
        INJECTION_DETAILS[name].line,
        INJECTION_DETAILS[name].column,
        rule,
        "warning" if INJECTION_DETAILS[name].outcome == "warning" else "row",
        HINTS.get(name, ""),
    )
    for name, rule in INJECTED.items()
] + [
    # The injections name the repeat; the first of each pair is rejected with it.
    Case("generator: duplicate_student_id (first)", G, "students.csv", 6, "student_id", INJECTED["duplicate_student_id"]),
    Case("generator: duplicate_email (first)", G, "staff.csv", 3, "email", INJECTED["duplicate_email"]),
]  # fmt: skip

# -- whole-upload faults: each file read on its own, so one fault per file ------------------
U1 = "300011"
UPLOAD_FAULTS_1 = native(
    U1,
    campuses_csv="campus_id,campus_name\n300011001,Lamar\n".encode("utf-16"),
    staff_csv="staff_id,first_name,First_Name,last_name,email,campus_id\nT1,A,A,B,a@b.org,300011001\n",
    students_csv=STUDENT_HEADER.encode() + b"S1,Luz,Pe\x81a,2016-03-04,04,300011001,,,,\n",
    classes_csv='class_id,campus_id,class_name,teacher_id\nC1,300011001,Math,T1\nC2,300011002,"Grade 7" Science,T2\n',
    enrollments_csv="class_id,student_id\nC1,S1\nC1,S2,S3\n",
    co_teachers_csv=b"PK\x03\x04 a workbook saved as .csv",
)
U2 = "300012"
UPLOAD_FAULTS_2 = native(
    U2,
    staff_csv="staff_id,first_name,email,campus_id\nT1,Ana,ana@example.org,300012001\n",
    students_csv="STU.student_id,first_name,last_name,birth_date,grade,campus_id\nS1,Luz,Peña,2016-03-04,04,300012001\n",
    classes_csv=None,
    classes_xlsx=b"PK\x03\x04 the classes workbook",
    enrollments_csv=b"",
)
U3 = "300013"
OTHER_LEA = native(
    U3,
    campuses_csv="campus_id,campus_name\n300013001,Lamar\n300013002,Travis\n300014001,Elsewhere\n",
)
UPLOAD_CASES = [
    Case("UTF-16 file", U1, "campuses.csv", 1, None, "file is UTF-16 text, not UTF-8 or Windows-1252", "upload"),
    Case("header duplicated", U1, "staff.csv", 1, "First_Name", "column appears twice in the header", "upload"),
    Case("undecodable bytes", U1, "students.csv", 2, None, "file cannot be decoded: it is neither UTF-8 nor Windows-1252", "upload"),
    Case("quoted-field parse error", U1, "classes.csv", 3, None, "file cannot be parsed as CSV", "upload"),
    Case("row with too many fields", U1, "enrollments.csv", 3, None, "row has 3 fields but the header has 2", "upload"),
    Case("workbook saved as .csv", U1, "co_teachers.csv", None, None, "file is a spreadsheet workbook, not CSV", "upload"),
    Case("required column missing", U2, "staff.csv", 1, "last_name", "required column is missing", "upload"),
    Case("SIS table prefix on a header", U2, "students.csv", 1, "student_id", "required column is missing", "upload", "SIS table prefix"),
    Case(".xlsx instead of classes.csv", U2, "classes.csv", None, None, "required file is missing", "upload", "classes.xlsx is a spreadsheet workbook: export it as CSV"),
    Case(".xlsx noted", U2, "classes.xlsx", None, None, "file is not part of the upload", "warning"),
    Case("empty enrollments.csv", U2, "enrollments.csv", 1, None, "file is empty", "upload"),
    Case("campus of another LEA", U3, "campuses.csv", 4, "campus_id", "campus_id belongs to another LEA", "upload"),
]  # fmt: skip

# -- OneRoster ------------------------------------------------------------------------------
R = "300021"


ONEROSTER_ROWS = oneroster(
    R,
    demographics_csv=("S2,,,2016-05-06,male", "S2,,,2016-13-06,male"),
    enrollments_csv=("E2,,,C2,O2,T2,teacher,true", "E2,,,C2,O2,T2,teacher,false"),
)
ONEROSTER_ROWS["users.csv"] += (
    "S4,,,false,O1,student,x,,Gone,Away,,,,,,,04,\n"  # 7: disabled, so absent
    "S5,,,true,O9,student,y,,No,School,,,,,,,04,\n"  # 8
    "S6,,,true,O1,student,z,,Early,Ed,,,,,,,IT,\n"  # 9: IT is read as EE
)
ONEROSTER_ROWS["demographics.csv"] += (
    "S5,,,2016-01-01,female,,,,,,,,,,,\nS6,,,2024-01-01,other,,,,,,,,,,,\nS3,,,2013-07-08,Q,,,,,,,,,,,\n"
)
ONEROSTER_ROWS["demographics.csv"] = ONEROSTER_ROWS["demographics.csv"].replace(
    "S3,,,2013-07-08,female,,,,,,,,,,,\n", ""
)
ONEROSTER_ROWS["enrollments.csv"] += "E8,,,C1,O1,S4,student,,,\nE9,,,C1,O1,S99,student,,,\n"
R2 = "300022"
DELTA = oneroster(R2, manifest_csv=("file.users,bulk", "file.users,delta"))
del DELTA["classes.csv"]
R3 = "300023"
NESTED = {"export.zip": zipped({**oneroster(R3), "old.zip": zipped({"users.csv": "x"})}, "export/")}
ONEROSTER_CASES = [
    Case("OneRoster bad birthDate", R, "demographics.csv", 3, "birthDate", DATE_FORM),
    Case("OneRoster sex Q", R, "demographics.csv", 6, "sex", "gender must be one of F, M, X", fix_says="female, male or other"),
    Case("OneRoster org missing from orgs.csv", R, "users.csv", 8, "orgSourcedIds", "orgSourcedIds must name orgs of orgs.csv", fix_says="Add the org to orgs.csv"),
    Case("OneRoster class without a primary teacher takes its first", R, "enrollments.csv", 3, "classSourcedId", NO_PRIMARY, "warning", "set primary=true"),
    Case("OneRoster enrollment of an unknown user", R, "enrollments.csv", 10, "userSourcedId", "student_id must be a student_id in students.csv", fix_says="Add the row to users.csv"),
    Case("OneRoster enrollment of a student rejected for sex", R, "enrollments.csv", 6, "userSourcedId", "student_id must be a student_id in students.csv", fix_says="itself rejected: see demographics.csv line 6"),
    Case("OneRoster enrollment of a student rejected for birthDate", R, "enrollments.csv", 5, "userSourcedId", "student_id must be a student_id in students.csv", fix_says="itself rejected: see demographics.csv line 3"),
    Case("OneRoster scheduled class not read", R, "classes.csv", None, "classType", "1 class was not read: this LEA's classes come from classType homeroom", "warning"),
    Case("OneRoster delta manifest", R2, "manifest.csv", 16, "value", "users.csv is a delta file; only bulk files are read", "upload", "bulk"),
    Case("OneRoster required file missing", R2, "classes.csv", None, None, "required file is missing", "upload"),
    Case("OneRoster zip inside the zip", R3, "export.zip", None, None, "the .zip contains another .zip", "upload"),
]  # fmt: skip

CASES = (
    STUDENT_CASES
    + STAFF_CASES
    + CLASS_CASES
    + PAIR_CASES
    + GENERATED_CASES
    + UPLOAD_CASES
    + ONEROSTER_CASES
)
REJECTED_UPLOADS = (U1, U2, U3, R2, R3)


def generated_upload() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        out = generate_upload(LeaSpec(G, G_SIZE), Path(folder), inject=[*INJECTED, "windows_1252"])
        return {p.name: p.read_bytes() for p in out.iterdir()}


UPLOADS: dict[str, dict] = {
    A: native(A, students_csv=STUDENTS_A),
    B: native(B, staff_csv=STAFF_B),
    C: native(C, staff_csv=STAFF_C, classes_csv=CLASSES_C),
    D: native(D, students_csv=STUDENTS_D, enrollments_csv=ENROLLMENTS_D, co_teachers_csv=CO_TEACHERS_D),
    U1: UPLOAD_FAULTS_1,
    U2: UPLOAD_FAULTS_2,
    U3: OTHER_LEA,
    R: {"oneroster.zip": zipped(ONEROSTER_ROWS, "export/")},
    R2: DELTA,
    R3: NESTED,
}  # fmt: skip


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Every upload of the catalogue in its LEA's inbox, then one sync: one run per LEA."""
    with shared_pipeline(tmp_path_factory.mktemp("catalogue")) as pipeline:
        for lea, files in {**UPLOADS, G: generated_upload()}.items():
            pipeline.upload(lea, files)
        runs = pipeline.sync()
        assert sorted(r.lea_id for r in runs) == sorted([*UPLOADS, G])
        assert all(r.success for r in runs), [r for r in runs if not r.success]
        yield pipeline


def _recorded(pipeline: Pipeline, lea: str) -> set[tuple]:
    return set(
        pipeline.query(
            'select file, line, "column", rule, level from quality.rejections where lea_id = ?',
            [lea],
        )
    )


def test_the_catalogue_is_large() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_bad_input_is_recorded_at_its_place(synced: Pipeline, case: Case) -> None:
    found = synced.query(
        "select fix from quality.rejections where lea_id = ? and file = ? and line is not"
        ' distinct from ? and "column" is not distinct from ? and rule = ? and level = ?',
        [case.lea, case.file, case.line, case.column, case.rule, case.level],
    )

    assert len(found) == 1, _recorded(synced, case.lea)
    assert case.fix_says in found[0][0]


@pytest.mark.parametrize("lea", [*UPLOADS, G])
def test_nothing_is_rejected_that_the_catalogue_does_not_name(synced: Pipeline, lea: str) -> None:
    expected = {(c.file, c.line, c.column, c.rule, c.level) for c in CASES if c.lea == lea}

    assert _recorded(synced, lea) == expected


@pytest.mark.parametrize(
    ("lea", "table", "rows"),
    [
        (A, "students", ["S1", "S2", "S27", "S28", "S29", "S3"]),
        (B, "staff", ["T1", "T19", "T2"]),
        (C, "classes", ["C1", "C18", "C2"]),
        (D, "enrollments", ["C1|S1", "C1|S2", "C2|S3"]),
        (D, "co_teachers", ["C1|T2"]),
        (R, "students", ["S1", "S6"]),
        (R, "staff", ["T1", "T2"]),
        (R, "classes", ["C1", "C2"]),
        (R, "enrollments", ["C1|S1"]),
        (R, "co_teachers", ["C1|T2"]),
    ],
)  # fmt: skip
def test_good_rows_of_the_same_upload_are_applied(
    synced: Pipeline, lea: str, table: str, rows: list[str]
) -> None:
    keys = {
        "enrollments": "class_id || '|' || student_id",
        "co_teachers": "class_id || '|' || staff_id",
    }
    key = keys.get(
        table, {"students": "student_id", "staff": "staff_id", "classes": "class_id"}.get(table)
    )

    applied = synced.query(f"select {key} from roster.{table} where lea_id = ? order by 1", [lea])

    assert [r[0] for r in applied] == rows
    assert synced.query("select status from ingest.uploads where lea_id = ?", [lea]) == [
        ("applied",)
    ]


def test_accepted_rows_are_normalised(synced: Pipeline) -> None:
    assert synced.query(
        "select student_id, first_name, last_name, birth_date::varchar, grade, gender"
        " from roster.students where lea_id = ? and student_id in ('S27', 'S28', 'S29') order by 1",
        [A],
    ) == [
        ("S27", "Ro", "Diaz", "2016-03-04", "KG", "F"),
        ("S28", "Sa", "Diaz", "2016-03-04", "PK", None),
        ("S29", "Ana, María", "López\nJr.", "2016-01-01", "04", None),
    ]
    assert synced.query(
        "select role, email, state_staff_id from roster.staff where lea_id = ? and staff_id = 'T19'",
        [B],
    ) == [("aide", "lee.ruiz@example.org", "1234567890")]  # the LEA's own casing, lowered
    assert synced.query(
        "select grade, school_year from roster.classes where lea_id = ? and class_id = 'C18'", [C]
    ) == [("KG", "2026-2027")]
    assert synced.query(
        "select student_id, grade from roster.students where lea_id = ? order by 1", [R]
    ) == [("S1", "04"), ("S6", "EE")]


def test_generated_upload_applies_everything_but_the_injected_rows(synced: Pipeline) -> None:
    students = synced.query("select count(*) from roster.students where lea_id = ?", [G])
    pena = synced.query(
        "select count(*) from roster.students where lea_id = ? and last_name = 'Peña'", [G]
    )

    assert students == [(G_SIZE + 1,)]  # the Windows-1252 student is valid
    assert pena[0][0] >= 1


@pytest.mark.parametrize("lea", REJECTED_UPLOADS)
def test_upload_rejected_as_a_whole_applies_nothing(synced: Pipeline, lea: str) -> None:
    assert synced.query("select status from ingest.uploads where lea_id = ?", [lea]) == [
        ("rejected",)
    ]
    for table in ("campuses", "staff", "students", "classes", "enrollments"):
        assert synced.query(f"select count(*) from roster.{table} where lea_id = ?", [lea]) == [
            (0,)
        ]
    report = next(t for n, t in synced.outbox(lea).items() if n.startswith("sync_report_"))
    assert "Rejected: nothing was applied" in report


@pytest.mark.parametrize("lea", [*UPLOADS, G])
def test_every_lea_gets_a_report_and_a_rejections_csv(synced: Pipeline, lea: str) -> None:
    outbox = synced.outbox(lea)
    names = sorted(outbox)

    assert [n.split("_")[0] for n in names] == ["rejections", "sync"]
    listed = pl.read_csv(io.StringIO(outbox[names[0]]), infer_schema=False)
    recorded = synced.query("select count(*) from quality.rejections where lea_id = ?", [lea])
    assert listed.height == recorded[0][0] > 0


def test_dagster_events_and_logs_carry_no_names_or_birth_dates(synced: Pipeline) -> None:
    """Metadata and logs get counts, rules, files and lines; values stay in the LEA's report."""
    personal = ["Peña", "Nguyen", "Ortiz", "María", "López", "2016-03-04", "2016-05-06",
                "2016-13-06", "2027-01-01", "2016-05-06 00:00", "not-an-email", "Gus@Example.org"]  # fmt: skip
    events = "\n".join(
        serialize_value(entry)
        for run in synced.instance.get_runs()
        for entry in synced.instance.all_logs(run.run_id)
    )

    assert "upload_rejections" in events and "birth_date must be a date" in events
    assert [p for p in personal if p in events] == []
