"""OneRoster 1.1 bulk sets: mapped onto the native tables, judged by the same rules, reported
in OneRoster's own files and columns; zips read safely."""

from __future__ import annotations

import io
import zipfile
from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline.upload_spec.archive import ZipLimits
from rostering_pipeline.upload_spec.validate import ValidatedUpload, validate_upload
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped

LEA = "101912"
UPLOAD_DATE = date(2026, 9, 1)


def _validate(files: dict[str, str | bytes], **options) -> ValidatedUpload:
    raw = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    return validate_upload(LEA, raw, UPLOAD_DATE, **options)


def _with(**replace: tuple[str, str]) -> dict[str, str]:
    files = oneroster_day_one()
    for name, (old, new) in replace.items():
        file = name.replace("_csv", ".csv")
        assert old in files[file]
        files[file] = files[file].replace(old, new)
    return files


def _problems(result: ValidatedUpload, level: str = "row") -> list[tuple]:
    return (
        result.rejections.filter(pl.col("level") == level)
        .select("file", "line", "column", "rule", "value")
        .rows()
    )


def test_a_clean_set_becomes_the_native_tables() -> None:
    result = _validate(oneroster_day_one())

    assert result.accepted
    assert _problems(result) == []
    expected_students = pl.DataFrame(
        {
            "student_id": ["S1", "S2", "S3"],
            "state_id": ["1234567890", None, None],
            "middle_name": ["María", None, None],
            "birth_date": [date(2016, 3, 4), date(2016, 5, 6), date(2013, 7, 8)],
            "grade": ["04", "04", "07"],
            "campus_id": ["101912001", "101912001", "101912002"],
            "gender": ["F", "M", "F"],
            "_line": [4, 5, 6],
        }
    )
    assert_frame_equal(
        result.tables["students"].select(expected_students.columns), expected_students
    )
    assert result.tables["staff"].select("staff_id", "campus_id", "role", "_line").rows() == [
        ("T1", "101912001", "teacher", 2),  # the first of "D1,O1" that is a school
        ("T2", "101912002", "teacher", 3),
    ]
    assert result.tables["campuses"].select("campus_id", "campus_name").rows() == [
        ("101912001", "Lamar Elementary"),
        ("101912002", "Travis Middle"),
    ]
    assert result.tables["classes"].select(
        "class_id", "campus_id", "teacher_id", "grade", "school_year"
    ).rows() == [
        ("C1", "101912001", "T1", "04", "2026-2027"),
        ("C2", "101912002", "T2", "07", "2026-2027"),
    ]
    assert result.tables["enrollments"].select("class_id", "student_id").rows() == [
        ("C1", "S1"),
        ("C1", "S2"),
        ("C2", "S3"),
    ]
    assert result.tables["co_teachers"].select("class_id", "staff_id", "_line").rows() == [
        ("C1", "T2", 8)
    ]


def test_only_homeroom_classes_by_default_and_the_rest_is_noted() -> None:
    files = oneroster_day_one()
    files["enrollments.csv"] += "E8,,,C9,O2,T2,teacher,true,,\n"

    default = _validate(files)
    wider = _validate(files, class_types=("homeroom", "scheduled"))

    assert _problems(default, "warning") == [
        (
            "classes.csv",
            None,
            "classType",
            "1 class was not read: this LEA's classes come from classType homeroom",
            "scheduled",
        )
    ]
    assert wider.tables["classes"]["class_id"].to_list() == ["C1", "C2", "C9"]
    assert wider.tables["classes"].filter(pl.col("class_id") == "C9")["grade"].to_list() == [None]
    assert ("C9", "S3") in wider.tables["enrollments"].select("class_id", "student_id").rows()


@pytest.mark.parametrize("folder", ["", "export/", "2026-09-01/oneroster/"])
def test_a_zip_reads_like_loose_files(folder: str) -> None:
    loose = _validate(oneroster_day_one())

    result = _validate({"export.zip": zipped(oneroster_day_one(), folder)})

    assert result.accepted
    for entity, table in loose.tables.items():
        assert_frame_equal(result.tables[entity], table)


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"demographics_csv": ("2016-05-06", "05/06/2016 00:00")},
         ("demographics.csv", 3, "birthDate", "birth_date must be a date written YYYY-MM-DD, MM/DD/YYYY or M/D/YYYY", "05/06/2016 00:00")),
        ({"demographics_csv": ("S2,,,2016-05-06,male", "S2,,,2016-05-06,unknown")},
         ("demographics.csv", 3, "sex", "gender must be one of F, M, X", "unknown")),
        ({"users_csv": ("Max,Ortiz,,,,,,,04", "Max,Ortiz,,,,,,,TK")},
         ("users.csv", 5, "grades", "grade must be one of EE, PK, KG, 01–12", "TK")),
        ({"users_csv": ("{TX:1234567890}", "{TX:123}")},
         ("users.csv", 4, "userIds", "state_id must be 10 digits", "123")),
        ({"users_csv": ("ben.cole@example.org", "ben.cole")},
         ("users.csv", 3, "email", "email must be a valid address", "ben.cole")),
        ({"users_csv": ("T2,,,true,O2,teacher", "T2,,,true,O2,janitor")},
         ("enrollments.csv", 3, "userSourcedId", "a role=teacher enrollment must name a user whose role is teacher, aide or administrator", "T2")),
        ({"orgs_csv": ("O2,,,Travis Middle,school,101912002", "O2,,,Travis Middle,school,10191200")},
         ("orgs.csv", 4, "identifier", "campus_id must be 9 digits, the first 6 being the LEA's lea_id", "10191200")),
        ({"classes_csv": ("C1,,,Grade 4 Math", "C1,,,")},
         ("classes.csv", 2, "title", "a required value is missing", None)),
    ],
)  # fmt: skip
def test_rejections_name_the_oneroster_file_line_and_column(
    replace: dict[str, tuple[str, str]], expected: tuple
) -> None:
    result = _validate(_with(**replace))

    assert expected in _problems(result)


def test_a_student_without_demographics_has_no_birth_date_and_is_accepted() -> None:
    files = _with(demographics_csv=("S3,,,2013-07-08,female,,,,,,,,,,,\n", ""))

    result = _validate(files)

    assert _problems(result) == []
    students = result.tables["students"].select("student_id", "birth_date", "gender")
    assert students.row(2) == ("S3", None, None)


def test_a_set_without_demographics_csv_is_accepted_when_the_manifest_says_absent() -> None:
    files = _with(manifest_csv=("file.demographics,bulk", "file.demographics,absent"))
    del files["demographics.csv"]

    result = _validate(files)

    assert result.accepted and _problems(result) == []
    assert result.tables["students"]["birth_date"].to_list() == [None, None, None]


def test_an_unreadable_school_year_is_ignored_never_a_reason_to_reject() -> None:
    result = _validate(_with(academicSessions_csv=(",2027\n", ",27\n")))

    assert _problems(result) == []
    assert result.tables["classes"]["school_year"].to_list() == [None, None]


def test_metadata_state_id_wins_over_user_ids() -> None:
    files = oneroster_day_one()
    files["users.csv"] = files["users.csv"].replace(
        ",password\n", ",password,metadata.stateUniqueId\n", 1
    )
    files["users.csv"] = files["users.csv"].replace(
        "{TX:1234567890},Luz,Peña,María,,,,,,04,",
        "{TX:1234567890},Luz,Peña,María,,,,,,04,,2222222222",
    )

    result = _validate(files)

    assert _problems(result, "warning")[1:] == []  # extension columns are not "unknown"
    assert result.tables["students"]["state_id"].to_list() == ["2222222222", None, None]


def test_disabled_and_deleted_people_are_absent_with_their_enrollments() -> None:
    files = _with(users_csv=("S2,,,true", "S2,,,false"))
    files["users.csv"] = files["users.csv"].replace("S3,,,true", "S3,tobedeleted,2026-08-30,true")

    result = _validate(files)

    assert result.tables["students"]["student_id"].to_list() == ["S1"]
    assert result.tables["enrollments"].select("class_id", "student_id").rows() == [("C1", "S1")]
    assert _problems(result) == []


@pytest.mark.parametrize("grade", ["IT", "PR", "it"])
def test_infant_and_preschool_grades_are_early_education(grade: str) -> None:
    result = _validate(_with(users_csv=("Max,Ortiz,,,,,,,04", f"Max,Ortiz,,,,,,,{grade}")))

    assert result.tables["students"].filter(pl.col("student_id") == "S2")["grade"].to_list() == [
        "EE"
    ]


def test_school_year_from_the_course_when_the_class_names_no_term() -> None:
    files = _with(
        classes_csv=(
            "C1,,,Grade 4 Math,04,,,homeroom,,O1,Y1",
            "C1,,,Grade 4 Math,04,M4,,homeroom,,O1,",
        )
    )
    files["courses.csv"] = (
        "sourcedId,status,dateLastModified,schoolYearSourcedId,title\nM4,,,Y2,Math 4\n"
    )
    files["academicSessions.csv"] += "Y2,,,2027-2028,schoolYear,2027-08-15,2028-06-01,,2028\n"
    files["manifest.csv"] = files["manifest.csv"].replace(
        "file.courses,absent", "file.courses,bulk"
    )

    result = _validate(files)

    assert result.tables["classes"].select("class_id", "school_year").rows() == [
        ("C1", "2027-2028"),
        ("C2", "2026-2027"),
    ]


def test_a_second_primary_teacher_is_a_co_teacher_and_a_repeat_is_rejected() -> None:
    files = oneroster_day_one()
    files["enrollments.csv"] += "E8,,,C2,O2,T1,teacher,true,,\nE9,,,C1,O1,T1,teacher,false,,\n"

    result = _validate(files)

    assert result.tables["co_teachers"].select("class_id", "staff_id").rows() == [
        ("C1", "T2"),
        ("C2", "T1"),
    ]
    assert _problems(result) == [
        (
            "enrollments.csv",
            10,
            "userSourcedId",
            "staff_id must not be the class's own teacher_id",
            "T1",
        )
    ]


@pytest.mark.parametrize(
    ("change", "file", "line", "column", "rule"),
    [
        (("file.users,bulk", "file.users,delta"), "manifest.csv", 16, "value", "users.csv is a delta file; only bulk files are read"),
        (("oneroster.version,1.1", "oneroster.version,1.0"), "manifest.csv", 3, "value", "oneroster.version must be 1.1: this is a OneRoster 1.0 set"),
        (("file.orgs,bulk", "file.orgs,absent"), "orgs.csv", None, None, "required file is missing (manifest.csv says it is absent)"),
    ],
)  # fmt: skip
def test_manifest_faults_reject_the_upload(
    change: tuple[str, str], file: str, line: int | None, column: str | None, rule: str
) -> None:
    result = _validate(_with(manifest_csv=change))

    assert not result.accepted
    assert (file, line, column, rule) in [p[:4] for p in _problems(result, "upload")]


def test_a_delta_says_why_only_bulk_is_read() -> None:
    result = _validate(_with(manifest_csv=("file.enrollments,bulk", "file.enrollments,delta")))

    fault = result.rejections.filter(pl.col("level") == "upload").row(0, named=True)
    assert "complete snapshot" in fault["fix"] and "delta cannot show who has left" in fault["fix"]


def test_missing_file_and_missing_column_are_named_in_oneroster_terms() -> None:
    files = oneroster_day_one()
    del files["enrollments.csv"]
    files["users.csv"] = files["users.csv"].replace("givenName,", "first,", 1)

    result = _validate(files)

    assert sorted(p[:4] for p in _problems(result, "upload")) == [
        ("enrollments.csv", None, None, "required file is missing"),
        ("users.csv", 1, "givenName", "required column is missing"),
    ]


def test_campus_of_another_lea_in_orgs_rejects_the_upload() -> None:
    result = _validate(_with(orgs_csv=("school,101912002", "school,227901002")))

    assert _problems(result, "upload") == [
        ("orgs.csv", 4, "identifier", "campus_id belongs to another LEA", "227901002")
    ]


def test_loose_files_beside_a_zip_are_ignored_with_a_note() -> None:
    result = _validate({"export.zip": zipped(oneroster_day_one()), "notes.txt": "hello"})

    assert result.accepted
    assert ("notes.txt", None, None, "file is not part of the upload", None) in _problems(
        result, "warning"
    )


# Zip safety --------------------------------------------------------------------------------


def _zip_with(entries: dict[str, bytes], encrypted: bool = False) -> bytes:
    """A zip whose member names are kept as given; `encrypted` marks every member as
    password-protected in the central directory, as an encrypting zip tool would."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content)
    data = bytearray(buffer.getvalue())
    at = data.find(b"PK\x01\x02")
    while encrypted and at >= 0:
        data[at + 8] |= 0x1
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


ONE_ROSTER_BYTES = {k: v.encode() for k, v in oneroster_day_one().items()}


@pytest.mark.parametrize(
    ("data", "limits", "rule"),
    [
        (b"PK\x03\x04 not really a zip", ZipLimits(), "file is not a readable .zip"),
        (zipped({"users.csv": "x"}), ZipLimits(), "the .zip has no manifest.csv"),
        (zipped({**oneroster_day_one(), "inner.zip": zipped({"a.csv": "x"})}), ZipLimits(), "the .zip contains another .zip"),
        (zipped({**oneroster_day_one(), "inner.bin": zipped({"a.csv": "x"})}), ZipLimits(), "the .zip contains another .zip"),
        (zipped(oneroster_day_one()), ZipLimits(max_members=3), "the .zip holds more than 3 files"),
        (zipped(oneroster_day_one()), ZipLimits(max_total_bytes=1000), "the .zip unpacks to more than 1,000 bytes"),
        (_zip_with({**ONE_ROSTER_BYTES, "a/users.csv": b"x"}), ZipLimits(), "the .zip holds two files of the same name"),
        (_zip_with(ONE_ROSTER_BYTES, encrypted=True), ZipLimits(), "the .zip is password-protected"),
    ],
)  # fmt: skip
def test_unsafe_or_broken_zips_reject_the_upload(data: bytes, limits: ZipLimits, rule: str) -> None:
    result = _validate({"export.zip": data}, zip_limits=limits)

    assert [(p[0], p[3]) for p in _problems(result, "upload")] == [("export.zip", rule)]


def test_zip_bomb_is_stopped_at_the_limit_not_after_inflating() -> None:
    bomb = zipped({**oneroster_day_one(), "padding.csv": "0" * 50_000_000})

    result = _validate({"export.zip": bomb}, zip_limits=ZipLimits(max_total_bytes=10_000_000))

    assert len(bomb) < 200_000
    assert _problems(result, "upload")[0][3] == "the .zip unpacks to more than 10,000,000 bytes"


def test_members_are_read_by_basename_only() -> None:
    traversal = {f"../../../{name}": content for name, content in ONE_ROSTER_BYTES.items()}

    result = _validate({"export.zip": _zip_with(traversal)})

    assert result.accepted
    assert result.tables["students"].height == 3


# Through the pipeline ----------------------------------------------------------------------


def test_a_rejected_oneroster_student_keeps_their_roster(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, {"export.zip": zipped(oneroster_day_one())}, day=1)
    pipeline.sync()
    day_two = _with(demographics_csv=("2016-05-06", "2016-05-06T00:00"))
    pipeline.upload(LEA, {"export.zip": zipped(day_two)}, day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads order by received_at") == [
        ("applied",),
        ("applied",),
    ]
    assert pipeline.query("select student_id from roster.students order by 1") == [
        ("S1",),
        ("S2",),
        ("S3",),
    ]
    assert pipeline.query("select class_id, student_id from roster.enrollments order by 1, 2") == [
        ("C1", "S1"),
        ("C1", "S2"),
        ("C2", "S3"),
    ]
    assert pipeline.query(
        "select file, line, \"column\", value from quality.rejections where level = 'row' order by file"
    ) == [
        ("demographics.csv", 3, "birthDate", "2016-05-06T00:00"),
        ("enrollments.csv", 5, "userSourcedId", "S2"),
    ]
    report = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]
    assert "OneRoster CSV set" in report and "| 3 | birthDate | 2016-05-06T00:00 |" in report
