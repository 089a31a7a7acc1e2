"""The files and columns of an upload, as UPLOAD_SPEC.md names them: the entity registry.

Each entity is one entry of UPLOAD_FILES, and what the pipeline builds per entity derives
from it: the roster table's DDL (warehouse/schema.py), the diff's keys, the validated assets
and their descriptions, the roster assets' inputs, the native format's file list. A new
entity is one entry here plus its rules (upload_spec/rules.py, integrity.py).
"""

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
    #: What the entity's validated asset holds (native entities only).
    description: str = ""
    #: Columns the roster keeps as dates; every other column is text.
    dates: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required_columns + self.optional_columns


CAMPUSES = UploadFile(
    "campuses",
    "campuses.csv",
    True,
    ("campus_id",),
    ("campus_id", "campus_name"),
    description="Campuses of the LEA's upload that pass every rule of campuses.csv.",
)
STAFF = UploadFile(
    "staff",
    "staff.csv",
    True,
    ("staff_id",),
    ("staff_id", "first_name", "last_name", "email"),
    ("campus_id", "role", "state_staff_id"),
    description="Staff members who pass every rule of staff.csv and point at accepted campuses.",
)
STUDENTS = UploadFile(
    "students",
    "students.csv",
    True,
    ("student_id",),
    ("student_id", "first_name", "last_name", "birth_date", "grade", "campus_id"),
    ("state_id", "middle_name", "gender", "home_language"),
    description="Students who pass every rule of students.csv and point at accepted campuses.",
    dates=("birth_date",),
)
CLASSES = UploadFile(
    "classes",
    "classes.csv",
    True,
    ("class_id",),
    ("class_id", "campus_id", "class_name", "teacher_id"),
    ("grade", "school_year"),
    description="Classes that pass every rule and name an accepted campus and teacher.",
)
ENROLLMENTS = UploadFile(
    "enrollments",
    "enrollments.csv",
    True,
    ("class_id", "student_id"),
    ("class_id", "student_id"),
    description="Student-in-class pairs whose class and student were both accepted.",
)
CO_TEACHERS = UploadFile(
    "co_teachers",
    "co_teachers.csv",
    False,
    ("class_id", "staff_id"),
    ("class_id", "staff_id"),
    description="Additional teachers of accepted classes, never the class's own teacher.",
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
