"""Small hand-written uploads in the native format, for tests that must see every row."""

from __future__ import annotations

CAMPUSES = "campus_id,campus_name\n101912001,Lamar Elementary\n101912002,Travis Middle\n"
STAFF = (
    "staff_id,first_name,last_name,email,campus_id\n"
    "T1,Ana,Reyes,ana.reyes@example.org,101912001\n"
    "T2,Ben,Cole,ben.cole@example.org,101912002\n"
)
STUDENTS = (
    "student_id,first_name,last_name,birth_date,grade,campus_id\n"
    "S1,Luz,Peña,2016-03-04,04,101912001\n"
    "S2,Max,Ortiz,2016-05-06,04,101912001\n"
    "S3,Ivy,Nguyen,2013-07-08,07,101912002\n"
)
CLASSES = (
    "class_id,campus_id,class_name,teacher_id\n"
    "C1,101912001,Grade 4 Math,T1\n"
    "C2,101912002,Grade 7 Science,T2\n"
)
ENROLLMENTS = "class_id,student_id\nC1,S1\nC1,S2\nC2,S3\n"


def day_one() -> dict[str, str]:
    return {
        "campuses.csv": CAMPUSES,
        "staff.csv": STAFF,
        "students.csv": STUDENTS,
        "classes.csv": CLASSES,
        "enrollments.csv": ENROLLMENTS,
    }


def day_two() -> dict[str, str]:
    """Day one with S4 added, S2 dropped, S3 moved to grade 08, and the enrollments to match."""
    files = day_one()
    files["students.csv"] = (
        "student_id,first_name,last_name,birth_date,grade,campus_id\n"
        "S1,Luz,Peña,2016-03-04,04,101912001\n"
        "S3,Ivy,Nguyen,2013-07-08,08,101912002\n"
        "S4,Eli,Park,2016-09-10,04,101912001\n"
    )
    files["enrollments.csv"] = "class_id,student_id\nC1,S1\nC1,S4\nC2,S3\n"
    return files
