"""UPLOAD_SPEC.md "OneRoster 1.1", line by line, through the real pipeline: what the standard
allows is accepted, and only what the contract needs and cannot get is refused, in
OneRoster's words. Each LEA below is one line of the section; one sync runs them all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rostering_pipeline.summary import print_summary
from rostering_pipeline.upload_spec.formats.oneroster_tables import NO_PRIMARY
from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.module_pipeline import shared_pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_for, zipped

SCHEDULED = ("classes.csv", None, "classType", "1 class was not read: this LEA's classes come from classType homeroom", "warning")  # fmt: skip
GUID_STUDENT = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
GUID_TEACHER = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
TOO_LONG = "x" * 256


def _no_demographics() -> dict[str, str]:
    files = oneroster_for("400001", manifest_csv=("file.demographics,bulk", "file.demographics,absent"))  # fmt: skip
    del files["demographics.csv"]
    return files


def _guids() -> dict[str, str]:
    files = oneroster_for("400002")
    for name in ("users.csv", "enrollments.csv", "demographics.csv"):
        files[name] = files[name].replace("S1,", f"{GUID_STUDENT},").replace("T1,", f"{GUID_TEACHER},")  # fmt: skip
    files["users.csv"] += f"{TOO_LONG},,,true,O1,student,long,,Al,Long,,,,,,,ZZ,\n"
    return files


def _dates() -> dict[str, str]:
    files = oneroster_for(
        "400005",
        enrollments_csv=(
            "E5,,,C2,O2,S3,student,false,,",
            "E5,,,C2,O2,S3,student,false,2024-08-15,2025-06-01",
        ),  # fmt: skip
    )
    files["enrollments.csv"] = (
        files["enrollments.csv"].replace(
            "E4,,,C1,O1,S2,student,false,,", "E4,,,C1,O1,S2,student,false,2026-10-01,"
        )
        + "E8,,,C2,O2,S1,student,false,09/01/2026,\n"
    )
    return files


def _sessions_without_school_year() -> dict[str, str]:
    files = oneroster_for("400006")
    files["academicSessions.csv"] = (
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId\n"
        "Y1,,,2026-2027,schoolYear,2026-08-15,2027-06-01,\n"
    )
    return files


SDS_V1 = {
    "School.csv": "SIS ID,Name\n1,Lamar Elementary\n",
    "Section.csv": "SIS ID,School SIS ID,Section Name\n10,1,Math\n",
    "Student.csv": "SIS ID,School SIS ID,First Name,Last Name\n100,1,Luz,Pena\n",
    "Teacher.csv": "SIS ID,School SIS ID,First Name,Last Name\n200,1,Ana,Reyes\n",
    "StudentEnrollment.csv": "Section SIS ID,SIS ID\n10,100\n",
    "TeacherRoster.csv": "Section SIS ID,SIS ID\n10,200\n",
}
SDS_V21 = {
    "orgs.csv": "sourcedId,name,type,parentSourcedId\n1,Lamar,school,\n",
    "users.csv": "sourcedId,username,givenName,familyName,password,activeDirectoryMatchId,email,phone,sms\n100,luz,Luz,Pena,,,,,\n",  # fmt: skip
    "roles.csv": "userSourcedId,orgSourcedId,role,sessionSourcedId,grade,isPrimary,roleStartDate,roleEndDate\n100,1,student,,04,true,,\n",  # fmt: skip
    "classes.csv": "sourcedId,orgSourcedId,title,sessionSourcedIds,courseSourcedId\n10,1,Math,,\n",
    "enrollments.csv": "classSourcedId,userSourcedId,role\n10,100,student\n",
}
CLEVER = {
    "schools.csv": "School_id,School_name,School_number\n1,Lamar,001\n",
    "students.csv": "School_id,Student_id,Last_name,First_name,Dob,Grade\n1,100,Pena,Luz,3/4/2016,4\n",  # fmt: skip
    "teachers.csv": "School_id,Teacher_id,Last_name,First_name,Teacher_email\n1,200,Reyes,Ana,ana@x.org\n",  # fmt: skip
    "sections.csv": "School_id,Section_id,Teacher_id,Name\n1,10,200,Math\n",
    "enrollments.csv": "School_id,Section_id,Student_id\n1,10,100\n",
}

UPLOADS: dict[str, dict[str, str | bytes]] = {
    "400001": {"export.zip": zipped(_no_demographics())},
    "400002": _guids(),
    "400003": oneroster_for(
        "400003",
        enrollments_csv=("E1,,,C1,O1,T1,teacher,true", "E1,,,C1,O1,T1,teacher,"),
    ),
    "400004": oneroster_for(
        "400004",
        users_csv=(
            "S1,",
            "A1,,,true,D1,administrator,adm,,Rosa,Diaz,,,rosa.diaz@example.org,,,,,\nS1,",
        ),  # fmt: skip
    ),
    "400005": _dates(),
    "400006": _sessions_without_school_year(),
    "400007": oneroster_for("400007", classes_csv=("C2,,,", "C2,tobedeleted,,")),
    "400008": oneroster_for(
        "400008",
        users_csv=(
            "teacher,bcole,,Ben,Cole,,,ben.cole@400008.example.org,,,,,",
            "student,bcole,,Ben,Cole,,,ben.cole@400008.example.org,,,,07,",
        ),  # fmt: skip
    ),
    "400009": oneroster_for("400009", classes_csv=("homeroom,,O2,", "homeroom,,D1,")),
    "400010": oneroster_for("400010", classes_csv=("homeroom,,O2,", "homeroom,,O7,")),
    "400011": oneroster_for(
        "400011", manifest_csv=("oneroster.version,1.1", "oneroster.version,1.2")
    ),  # fmt: skip
    "400012": {
        **oneroster_for("400012"),
        "roles.csv": "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId\n",  # fmt: skip
    },
    "400013": SDS_V1,
    "400014": SDS_V21,
    "400015": CLEVER,
    "400016": {k: v for k, v in oneroster_for("400016").items() if k != "manifest.csv"},
}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    with shared_pipeline(tmp_path_factory.mktemp("oneroster_standard")) as pipeline:
        for lea, files in UPLOADS.items():
            pipeline.upload(lea, files)
        runs = pipeline.sync()
        assert sorted(r.lea_id for r in runs) == sorted(UPLOADS)
        assert all(r.success for r in runs), [r for r in runs if not r.success]
        yield pipeline, runs


def _rejections(pipeline: Pipeline, lea: str) -> set[tuple]:
    return set(
        pipeline.query(
            'select file, line, "column", rule, level from quality.rejections where lea_id = ?',
            [lea],
        )
    )


def _fix(pipeline: Pipeline, lea: str, file: str, line: int) -> str:
    rows = pipeline.query(
        "select fix from quality.rejections where lea_id = ? and file = ? and line = ?",
        [lea, file, line],
    )
    assert len(rows) == 1, rows
    return rows[0][0]


def _rows(pipeline: Pipeline, sql: str, lea: str) -> list[tuple]:
    return pipeline.query(sql + " order by all", [lea])


def _status(pipeline: Pipeline, lea: str) -> str:
    return pipeline.query("select status from ingest.uploads where lea_id = ?", [lea])[0][0]


def _report(pipeline: Pipeline, lea: str) -> str:
    return next(t for n, t in pipeline.outbox(lea).items() if n.startswith("sync_report_"))


def test_demographics_is_optional_and_a_student_without_a_birth_date_is_accepted(synced) -> None:
    pipeline, _ = synced
    assert _status(pipeline, "400001") == "applied"
    assert _rows(
        pipeline, "select student_id, birth_date from roster.students where lea_id = ?", "400001"
    ) == [("S1", None), ("S2", None), ("S3", None)]
    assert _rejections(pipeline, "400001") == {SCHEDULED}


def test_guid_sourced_ids_are_ids_and_only_over_255_characters_is_refused(synced) -> None:
    pipeline, _ = synced
    lea = "400002"
    assert _rows(pipeline, "select student_id from roster.students where lea_id = ?", lea) == [
        (GUID_STUDENT,), ("S2",), ("S3",),
    ]  # fmt: skip
    assert _rows(
        pipeline, "select class_id, teacher_id from roster.classes where lea_id = ?", lea
    ) == [("C1", GUID_TEACHER), ("C2", "T2")]
    assert _rejections(pipeline, lea) == {
        SCHEDULED,
        (
            "users.csv",
            7,
            "sourcedId",
            "student_id must be 1–255 characters, none of them a control character",
            "row",
        ),  # fmt: skip
        ("users.csv", 7, "grades", "grade must be one of EE, PK, KG, 01–12", "row"),
    }
    assert (
        "at most 255 characters"
        in pipeline.query(
            "select fix from quality.rejections where lea_id = ? and \"column\" = 'sourcedId'",
            [lea],
        )[0][0]
    )


def test_the_cli_summary_counts_rejected_rows_as_the_report_does(synced) -> None:
    pipeline, runs = synced
    said: list[str] = []
    warehouse = WarehouseResource(path=str(pipeline.warehouse))
    print_summary(warehouse, [r for r in runs if r.lea_id == "400002"], said.append)

    assert said[-2].split()[7:9] == ["rejected", "rows"]
    assert said[-1].split()[7] == "1"  # one row broke two rules
    assert "except 1 rejected row" in _report(pipeline, "400002")


def test_a_class_without_a_primary_teacher_takes_its_first_teacher_enrollment(synced) -> None:
    pipeline, _ = synced
    lea = "400003"
    assert _rows(
        pipeline, "select class_id, teacher_id from roster.classes where lea_id = ?", lea
    ) == [("C1", "T1"), ("C2", "T2")]
    assert _rows(
        pipeline, "select class_id, staff_id from roster.co_teachers where lea_id = ?", lea
    ) == [("C1", "T2")]
    assert _rejections(pipeline, lea) == {
        SCHEDULED, ("enrollments.csv", 2, "classSourcedId", NO_PRIMARY, "warning"),
    }  # fmt: skip
    assert pipeline.query(
        "select value from quality.rejections where lea_id = ? and level = 'warning' and line = 2",
        [lea],
    ) == [("C1",)]


def test_district_level_staff_keep_their_account_with_no_campus(synced) -> None:
    pipeline, _ = synced
    lea = "400004"
    assert _rows(
        pipeline, "select staff_id, campus_id, role from roster.staff where lea_id = ?", lea
    ) == [("A1", None, "administrator"), ("T1", "400004001", "teacher"), ("T2", "400004002", "teacher")]  # fmt: skip
    assert pipeline.query(
        "select status from roster.accounts where lea_id = ? and staff_id = 'A1'", [lea]
    ) == [("active",)]
    assert _rejections(pipeline, lea) == {SCHEDULED}


def test_an_enrollment_outside_its_dates_is_absent_and_counted(synced) -> None:
    pipeline, _ = synced
    lea = "400005"
    assert _rows(
        pipeline, "select class_id, student_id from roster.enrollments where lea_id = ?", lea
    ) == [("C1", "S1")]
    assert _rejections(pipeline, lea) == {
        SCHEDULED,
        (
            "enrollments.csv",
            None,
            "beginDate/endDate",
            "2 enrollments were not applied: outside their beginDate/endDate on the upload date (2026-09-01)",
            "note",
        ),  # fmt: skip
        (
            "enrollments.csv",
            9,
            "beginDate/endDate",
            "beginDate and endDate must be dates written YYYY-MM-DD",
            "row",
        ),  # fmt: skip
    }
    assert "2 enrollments were not applied" in _report(pipeline, lea)


def test_academic_sessions_without_school_year_are_ignored(synced) -> None:
    pipeline, _ = synced
    assert _status(pipeline, "400006") == "applied"
    assert _rows(
        pipeline, "select class_id, school_year from roster.classes where lea_id = ?", "400006"
    ) == [("C1", None), ("C2", None)]
    assert _rejections(pipeline, "400006") == {SCHEDULED}


def test_a_tobedeleted_class_is_absent_with_its_enrollments(synced) -> None:
    pipeline, _ = synced
    lea = "400007"
    assert _rows(pipeline, "select class_id from roster.classes where lea_id = ?", lea) == [("C1",)]
    assert _rows(
        pipeline, "select class_id, student_id from roster.enrollments where lea_id = ?", lea
    ) == [("C1", "S1"), ("C1", "S2")]
    assert _rejections(pipeline, lea) == {SCHEDULED}


def test_a_teacher_enrollment_of_a_student_says_so_not_add_the_row(synced) -> None:
    pipeline, _ = synced
    lea = "400008"
    wrong_role = "a role=teacher enrollment must name a user whose role is teacher, aide or administrator"  # fmt: skip
    assert _rejections(pipeline, lea) == {
        SCHEDULED,
        ("enrollments.csv", 3, "userSourcedId", wrong_role, "row"),  # C2's teacher
        (
            "enrollments.csv",
            6,
            "classSourcedId",
            "class_id must be a class_id in classes.csv",
            "row",
        ),  # fmt: skip
        ("enrollments.csv", 8, "userSourcedId", wrong_role, "row"),  # C1's co-teacher
    }
    assert _fix(pipeline, lea, "enrollments.csv", 3).startswith("users.csv line 3 gives this user role=student")  # fmt: skip
    assert _fix(pipeline, lea, "enrollments.csv", 6).startswith(
        "That classSourcedId was itself rejected: see enrollments.csv line 3;"
    )


@pytest.mark.parametrize(
    ("lea", "rule", "fix_says"),
    [
        ("400009", "schoolSourcedId must be an org of type=school", "That org is of type=district"),
        (
            "400010",
            "schoolSourcedId must be the sourcedId of an org in orgs.csv",
            "Add the school to orgs.csv",
        ),  # fmt: skip
    ],
)
def test_a_class_whose_school_is_no_school_is_told_why(synced, lea, rule, fix_says) -> None:
    pipeline, _ = synced
    assert _rejections(pipeline, lea) == {
        SCHEDULED,
        ("classes.csv", 3, "schoolSourcedId", rule, "row"),
        (
            "enrollments.csv",
            6,
            "classSourcedId",
            "class_id must be a class_id in classes.csv",
            "row",
        ),  # fmt: skip
    }
    assert fix_says in _fix(pipeline, lea, "classes.csv", 3)
    assert _fix(pipeline, lea, "enrollments.csv", 6).startswith(
        "That classSourcedId was itself rejected: see classes.csv line 3;"
    )


def test_a_oneroster_1_2_set_is_refused_as_what_it_is(synced) -> None:
    pipeline, _ = synced
    assert _status(pipeline, "400011") == "rejected"
    assert _rejections(pipeline, "400011") == {
        (
            "manifest.csv",
            3,
            "value",
            "oneroster.version must be 1.1: this is a OneRoster 1.2 set",
            "upload",
        ),  # fmt: skip
    }
    report = _report(pipeline, "400011")
    assert "OneRoster 1.1 set" not in report and "OneRoster version 1.1 CSV bulk" in report


def test_roles_csv_in_a_1_1_set_is_a_note_not_a_warning(synced) -> None:
    pipeline, _ = synced
    assert _status(pipeline, "400012") == "applied"
    assert _rejections(pipeline, "400012") == {
        SCHEDULED,
        (
            "roles.csv",
            None,
            None,
            "not read: a file of OneRoster 1.2 (or SDS), not of a 1.1 set",
            "note",
        ),  # fmt: skip
    }
    assert "### For information: roles.csv" in _report(pipeline, "400012")


@pytest.mark.parametrize(
    ("lea", "what"),
    [
        ("400013", "Microsoft School Data Sync (SDS) v1 CSV"),
        ("400014", "Microsoft School Data Sync (SDS) v2.1 CSV"),
        ("400015", "Clever SFTP CSV"),
    ],
)
def test_other_rostering_formats_are_named_and_refused(synced, lea: str, what: str) -> None:
    pipeline, _ = synced
    assert _status(pipeline, lea) == "rejected"
    (rejection,) = pipeline.query(
        "select rule, level, fix from quality.rejections where lea_id = ?", [lea]
    )
    assert rejection[:2] == (f"the upload is in {what} format, which this pipeline does not read", "upload")  # fmt: skip
    assert "OneRoster 1.1 CSV bulk export" in rejection[2]
    assert "required file is missing" not in _report(pipeline, lea)


def test_a_set_without_its_manifest_is_refused_saying_what_to_export(synced) -> None:
    pipeline, _ = synced
    assert _status(pipeline, "400016") == "rejected"
    (rejection,) = pipeline.query(
        "select file, rule, fix from quality.rejections where lea_id = ?", ["400016"]
    )
    assert rejection[:2] == ("manifest.csv", "manifest.csv is missing: the set's version and files cannot be known")  # fmt: skip
    assert "Export the full OneRoster 1.1 CSV bulk set" in rejection[2]
