"""The files and columns of an upload, as UPLOAD_SPEC.md names them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadFile:
    """One CSV file of the native format and the roster table it feeds."""

    entity: str
    file_name: str
    required: bool
    key: tuple[str, ...]
    required_columns: tuple[str, ...]
    optional_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required_columns + self.optional_columns


CAMPUSES = UploadFile(
    "campuses", "campuses.csv", True, ("campus_id",), ("campus_id", "campus_name")
)
STAFF = UploadFile(
    "staff",
    "staff.csv",
    True,
    ("staff_id",),
    ("staff_id", "first_name", "last_name", "email"),
    ("campus_id", "role", "state_staff_id"),
)
STUDENTS = UploadFile(
    "students",
    "students.csv",
    True,
    ("student_id",),
    ("student_id", "first_name", "last_name", "birth_date", "grade", "campus_id"),
    ("state_id", "middle_name", "gender", "home_language"),
)
CLASSES = UploadFile(
    "classes",
    "classes.csv",
    True,
    ("class_id",),
    ("class_id", "campus_id", "class_name", "teacher_id"),
    ("grade", "school_year"),
)
ENROLLMENTS = UploadFile(
    "enrollments", "enrollments.csv", True, ("class_id", "student_id"), ("class_id", "student_id")
)
CO_TEACHERS = UploadFile(
    "co_teachers", "co_teachers.csv", False, ("class_id", "staff_id"), ("class_id", "staff_id")
)

UPLOAD_FILES: tuple[UploadFile, ...] = (
    CAMPUSES,
    STAFF,
    STUDENTS,
    CLASSES,
    ENROLLMENTS,
    CO_TEACHERS,
)
ENTITIES: tuple[str, ...] = tuple(f.entity for f in UPLOAD_FILES)
BY_ENTITY: dict[str, UploadFile] = {f.entity: f for f in UPLOAD_FILES}
BY_FILE_NAME: dict[str, UploadFile] = {f.file_name: f for f in UPLOAD_FILES}
