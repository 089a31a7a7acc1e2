"""OneRoster 1.1 rows turned into the native tables of UPLOAD_SPEC.md, values still text.

Each native row keeps `_line`, the line of the OneRoster row it came from (orgs.csv for a
campus, users.csv for a person, classes.csv for a class, enrollments.csv for an enrollment
or co-teacher). A value taken from another file brings that file's line in a column of its
own (`_demographics_line`, `_teacher_line`, `_session_line`), so a rejection can name it.
"""

from __future__ import annotations

import polars as pl

from .files import BY_ENTITY
from .reading import LINE
from .rejections import Rejection

STAFF_ROLES = ("teacher", "aide", "administrator")
STATE_ID_METADATA = "metadata.stateUniqueId"
#: CEDS codes the native grades do not have: infant/toddler and preschool are early education.
EARLY_EDUCATION = ("IT", "PR")
SEX = {"female": "F", "male": "M", "other": "X"}

DEMOGRAPHICS_LINE = "_demographics_line"
TEACHER_LINE = "_teacher_line"
SESSION_LINE = "_session_line"
STATE_ID_COLUMN = "_state_id_column"


def to_native(
    read: dict[str, pl.DataFrame], class_types: tuple[str, ...]
) -> tuple[dict[str, pl.DataFrame], list[Rejection]]:
    """The six native tables, and warnings about what the mapping left out on purpose."""
    notes: list[Rejection] = []
    orgs = _current(read["orgs.csv"])
    schools = orgs.filter(_lower("type") == "school")
    school_of = schools.select(pl.col("sourcedId").alias("_org"), pl.col("identifier")).unique(
        "_org", keep="first", maintain_order=True
    )
    everyone = read["users.csv"]
    users = _current(everyone).filter(_lower("enabledUser").ne_missing("false"))
    # Someone disabled or deleted is absent, and so are their enrollments.
    absent = everyone.filter(~pl.col("sourcedId").is_in(users["sourcedId"].implode()))
    users = users.join(_campus_of_users(users, school_of), on=LINE, how="left")

    classes = _current(read["classes.csv"])
    wanted = [t.lower() for t in class_types]
    skipped = classes.filter(~_lower("classType").is_in(wanted))
    for class_type, count in skipped.group_by(_lower("classType")).len().sort("classType").rows():
        notes.append(_skipped_classes(class_type, count, class_types))
    classes = classes.filter(_lower("classType").is_in(wanted))

    enrollments = _current(read["enrollments.csv"]).filter(
        ~pl.col("classSourcedId").is_in(skipped.get_column("sourcedId").implode())
        & ~pl.col("userSourcedId").is_in(absent["sourcedId"].implode())
    )
    teaching = enrollments.filter(_lower("role") == "teacher")
    primary = (
        teaching.filter(_lower("primary") == "true")
        .sort(LINE)
        .unique("classSourcedId", keep="first")
        .select(
            pl.col("classSourcedId").alias("sourcedId"),
            pl.col("userSourcedId").alias("teacher_id"),
            pl.col(LINE).alias(TEACHER_LINE),
        )
    )
    co_teachers = teaching.filter(~pl.col(LINE).is_in(primary.get_column(TEACHER_LINE).implode()))

    tables = {
        "campuses": schools.select(
            pl.col("identifier").alias("campus_id"), pl.col("name").alias("campus_name"), LINE
        ),
        "staff": _staff(users),
        "students": _students(users, read),
        "classes": _classes(classes, primary, school_of, read),
        "enrollments": enrollments.filter(_lower("role") == "student").select(
            pl.col("classSourcedId").alias("class_id"),
            pl.col("userSourcedId").alias("student_id"),
            LINE,
        ),
        "co_teachers": co_teachers.select(
            pl.col("classSourcedId").alias("class_id"),
            pl.col("userSourcedId").alias("staff_id"),
            LINE,
        ),
    }
    return {entity: _complete(entity, frame) for entity, frame in tables.items()}, notes


def _staff(users: pl.DataFrame) -> pl.DataFrame:
    return users.filter(_lower("role").is_in(STAFF_ROLES)).select(
        pl.col("sourcedId").alias("staff_id"),
        pl.col("givenName").alias("first_name"),
        pl.col("familyName").alias("last_name"),
        pl.col("email"),
        pl.col("campus_id"),
        _lower("role").alias("role"),
        _state_id().alias("state_staff_id"),
        _state_id_column(),
        LINE,
    )


def _students(users: pl.DataFrame, read: dict[str, pl.DataFrame]) -> pl.DataFrame:
    demographics = (
        _current(read["demographics.csv"])
        .sort(LINE)
        .unique("sourcedId", keep="first")
        .select(
            pl.col("sourcedId"),
            pl.col("birthDate"),
            pl.col("sex"),
            pl.col(LINE).alias(DEMOGRAPHICS_LINE),
        )
    )
    sex = _lower("sex")
    return (
        users.filter(_lower("role") == "student")
        .join(demographics, on="sourcedId", how="left")
        .select(
            pl.col("sourcedId").alias("student_id"),
            _state_id().alias("state_id"),
            pl.col("givenName").alias("first_name"),
            pl.col("middleName").alias("middle_name"),
            pl.col("familyName").alias("last_name"),
            pl.col("birthDate").alias("birth_date"),
            _grade(first_only=False).alias("grade"),
            pl.col("campus_id"),
            pl.when(sex == "unspecified")
            .then(None)
            .otherwise(sex.replace_strict(SEX, default=pl.col("sex")))
            .alias("gender"),
            _state_id_column(),
            LINE,
            DEMOGRAPHICS_LINE,
        )
    )


def _classes(
    classes: pl.DataFrame,
    primary: pl.DataFrame,
    school_of: pl.DataFrame,
    read: dict[str, pl.DataFrame],
) -> pl.DataFrame:
    term = pl.col("termSourcedIds").str.split(",").list.first().str.strip_chars()
    sessions = _school_years(read.get("academicSessions.csv"))
    courses = _courses(read.get("courses.csv"), sessions)
    return (
        classes.with_columns(term.alias("_term"))
        .join(primary, on="sourcedId", how="left")
        .join(school_of, left_on="schoolSourcedId", right_on="_org", how="left")
        .join(sessions, left_on="_term", right_on="_session", how="left")
        .join(courses, left_on="courseSourcedId", right_on="_course", how="left", suffix="_course")
        .select(
            pl.col("sourcedId").alias("class_id"),
            pl.coalesce("identifier", "schoolSourcedId").alias("campus_id"),
            pl.col("title").alias("class_name"),
            pl.col("teacher_id"),
            _grade(first_only=True).alias("grade"),
            pl.coalesce("school_year", "school_year_course").alias("school_year"),
            pl.when(pl.col("school_year").is_not_null())
            .then(pl.col(SESSION_LINE))
            .otherwise(pl.col(f"{SESSION_LINE}_course"))
            .alias(SESSION_LINE),
            LINE,
            TEACHER_LINE,
        )
    )


def _school_years(sessions: pl.DataFrame | None) -> pl.DataFrame:
    """academicSessions' schoolYear (the year the school year ends) as `YYYY-YYYY`."""
    schema = {"_session": pl.String, "school_year": pl.String, SESSION_LINE: pl.Int64}
    if sessions is None:
        return pl.DataFrame(schema=schema)
    year = pl.col("schoolYear")
    return (
        _current(sessions)
        .filter(year.is_not_null())
        .sort(LINE)
        .unique("sourcedId", keep="first")
        .select(
            pl.col("sourcedId").alias("_session"),
            pl.when(year.str.contains(r"^\d{4}$"))
            .then(pl.format("{}-{}", year.cast(pl.Int64, strict=False) - 1, year))
            .otherwise(year)
            .alias("school_year"),
            pl.col(LINE).alias(SESSION_LINE),
        )
    )


def _courses(courses: pl.DataFrame | None, sessions: pl.DataFrame) -> pl.DataFrame:
    schema = {"_course": pl.String, "school_year": pl.String, SESSION_LINE: pl.Int64}
    if courses is None or "schoolYearSourcedId" not in courses.columns:
        return pl.DataFrame(schema=schema)
    return (
        _current(courses)
        .sort(LINE)
        .unique("sourcedId", keep="first")
        .join(sessions, left_on="schoolYearSourcedId", right_on="_session", how="inner")
        .select(pl.col("sourcedId").alias("_course"), "school_year", SESSION_LINE)
    )


def _campus_of_users(users: pl.DataFrame, school_of: pl.DataFrame) -> pl.DataFrame:
    """The first of a user's orgSourcedIds that is a school, as its campus number; failing
    that, the first org as written (so the campus check names it)."""
    orgs = (
        users.select(LINE, pl.col("orgSourcedIds").str.split(",").alias("_org"))
        .explode("_org", empty_as_null=True)
        .with_columns(pl.col("_org").str.strip_chars())
        .join(school_of, on="_org", how="left", maintain_order="left")
    )
    return orgs.group_by(LINE).agg(
        pl.coalesce(pl.col("identifier").drop_nulls().first(), pl.col("_org").first()).alias(
            "campus_id"
        )
    )


def _grade(*, first_only: bool) -> pl.Expr:
    """A student's grade is the first CEDS code listed; a class takes one only when it lists
    exactly one (a class of several grades has no single grade)."""
    codes = pl.col("grades").str.split(",")
    code = codes.list.first().str.strip_chars()
    early = code.str.to_uppercase().is_in(EARLY_EDUCATION)
    grade = pl.when(early).then(pl.lit("EE")).otherwise(code)
    return pl.when(codes.list.len() == 1).then(grade) if first_only else grade


def _state_id() -> pl.Expr:
    tx = pl.col("userIds").str.extract(r"(?i)\{\s*TX\s*:\s*([^}]*?)\s*\}", 1)
    return pl.coalesce(pl.col(STATE_ID_METADATA), tx)


def _state_id_column() -> pl.Expr:
    return (
        pl.when(pl.col(STATE_ID_METADATA).is_not_null())
        .then(pl.lit(STATE_ID_METADATA))
        .otherwise(pl.lit("userIds"))
        .alias(STATE_ID_COLUMN)
    )


def _current(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows a bulk file still carries: `status=tobedeleted` means the record is gone."""
    if "status" not in frame.columns:
        return frame
    return frame.filter(_lower("status").ne_missing("tobedeleted"))


def _lower(column: str) -> pl.Expr:
    return pl.col(column).str.to_lowercase()


def _complete(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The native columns in the native order (absent ones blank), then the line columns."""
    spec = BY_ENTITY[entity]
    missing = [pl.lit(None, dtype=pl.String).alias(c) for c in spec.columns if c not in frame]
    extra = [c for c in frame.columns if c not in spec.columns]
    return frame.with_columns(missing).select(*spec.columns, *extra).sort(LINE)


def _skipped_classes(class_type: str | None, count: int, class_types: tuple[str, ...]) -> Rejection:
    shown = ", ".join(class_types)
    return Rejection(
        "classes.csv",
        None,
        "classType",
        f"{count} {'class was' if count == 1 else 'classes were'} not read: "
        f"this LEA's classes come from classType {shown}",
        class_type,
        "Nothing to fix if these are not meant to be classes here; otherwise ask the "
        "rostering operators to add this class type to your LEA's settings.",
        "warning",
    )
