"""OneRoster 1.1 rows turned into the native tables of UPLOAD_SPEC.md, values still text.

Each native row keeps `_line`, the line of the OneRoster row it came from (orgs.csv for a
campus, users.csv for a person, classes.csv for a class, enrollments.csv for an enrollment
or co-teacher). A value taken from another file brings that file's line in a column of its
own (`_demographics_line`, `_teacher_line`, `_session_line`), so a rejection can name it.

What only OneRoster can get wrong (a student in no school, a class whose school is a
district, a teacher enrollment of a student) is rejected here, at the OneRoster row, in
`rejected_rows`; the rules then judge the rest as they judge a native upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from ..files import BY_ENTITY
from ..reading import LINE
from ..rejections import Rejection
from .base import ReadOptions, format_rejections

STAFF_ROLES = ("teacher", "aide", "administrator")
STATE_ID_METADATA = "metadata.stateUniqueId"
#: CEDS codes the native grades do not have: infant/toddler and preschool are early education.
EARLY_EDUCATION = ("IT", "PR")
SEX = {"female": "F", "male": "M", "other": "X"}

DEMOGRAPHICS_LINE = "_demographics_line"
TEACHER_LINE = "_teacher_line"
SESSION_LINE = "_session_line"
STATE_ID_COLUMN = "_state_id_column"
#: A OneRoster date; exporters that write a timestamp put the date first.
ONEROSTER_DATE = r"^\d{4}-\d{2}-\d{2}"

NO_PRIMARY = (
    "the class has no teacher enrollment with primary=true: its first role=teacher "
    "enrollment in file order was taken as its teacher"
)
NO_PRIMARY_FIX = (
    "Nothing to fix if this is the class's teacher; otherwise set primary=true on the "
    "enrollment of the class's teacher."
)


@dataclass
class Mapped:
    tables: dict[str, pl.DataFrame]
    notes: list[Rejection]
    rejected_rows: pl.DataFrame


def to_native(read: dict[str, pl.DataFrame], options: ReadOptions) -> Mapped:
    """The six native tables; warnings and notes about what the mapping left out on purpose;
    and the rows it rejected itself."""
    notes: list[Rejection] = []
    problems: list[pl.DataFrame] = []
    everyone_org = read["orgs.csv"]
    orgs = _current(everyone_org)
    gone_orgs = everyone_org.filter(~pl.col(LINE).is_in(orgs[LINE].implode()))["sourcedId"]
    schools = orgs.filter(_lower("type") == "school").with_columns(
        pl.when(pl.col("identifier").str.contains(r"^\d{3}$"))
        .then(pl.lit(options.lea_id) + pl.col("identifier"))
        .otherwise(pl.col("identifier"))
        .alias("identifier")
    )
    school_of = schools.select(pl.col("sourcedId").alias("_org"), pl.col("identifier")).unique(
        "_org", keep="first", maintain_order=True
    )
    org_types = orgs.select(pl.col("sourcedId").alias("_org"), _lower("type").alias("_type"))
    org_types = org_types.unique("_org", keep="first", maintain_order=True)

    everyone = read["users.csv"]
    users = _current(everyone).filter(_lower("enabledUser").ne_missing("false"))
    # Someone disabled or deleted is absent, and so are their enrollments.
    absent = everyone.filter(~pl.col("sourcedId").is_in(users["sourcedId"].implode()))
    users = users.join(_campus_of_users(users, school_of, org_types), on=LINE, how="left")
    problems.append(_user_org_problems(users))

    everyone_class = read["classes.csv"]
    classes = _current(everyone_class).filter(~pl.col("schoolSourcedId").is_in(gone_orgs.implode()))
    wanted = [t.lower() for t in options.class_types]
    skipped = classes.filter(~_lower("classType").is_in(wanted))
    for class_type, count in skipped.group_by(_lower("classType")).len().sort("classType").rows():
        notes.append(_skipped_classes(class_type, count, options.class_types))
    classes = classes.filter(_lower("classType").is_in(wanted))
    # A deleted class, or one of another type, is absent and so are its enrollments.
    not_classes = everyone_class.filter(~pl.col("sourcedId").is_in(classes["sourcedId"].implode()))

    enrollments = _current(read["enrollments.csv"]).filter(
        ~pl.col("classSourcedId").is_in(not_classes.get_column("sourcedId").implode())
        & ~pl.col("userSourcedId").is_in(absent["sourcedId"].implode())
    )
    enrollments, bad_dates, outside = _within_dates(enrollments, options.upload_date)
    if outside:
        notes.append(_outside_dates(outside, options.upload_date))
    teaching = enrollments.filter(_lower("role") == "teacher")
    primary, first_taken = _teachers(teaching)
    notes += [
        Rejection("enrollments.csv", line, "classSourcedId", NO_PRIMARY, class_id,
                  NO_PRIMARY_FIX, "warning")
        for class_id, line in first_taken.select("sourcedId", TEACHER_LINE).rows()
    ]  # fmt: skip
    co_teachers = teaching.filter(~pl.col(LINE).is_in(primary.get_column(TEACHER_LINE).implode()))
    class_rows = _classes(classes, primary, school_of, read)

    roles = users.select(pl.col("sourcedId").alias("_user"), _lower("role").alias("_role"), LINE)
    tables = {
        "campuses": schools.select(
            pl.col("identifier").alias("campus_id"), pl.col("name").alias("campus_name"), LINE
        ),
        "staff": _staff(users),
        "students": _students(users, read),
        "classes": class_rows,
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
    problems += [
        _class_school_problems(classes, org_types),
        _wrong_roles(tables, roles),
        _date_problems(bad_dates, tables),
    ]
    rejected = pl.concat(problems).unique([LINE, "entity"], keep="first", maintain_order=True)
    return Mapped(
        {entity: _complete(entity, frame) for entity, frame in tables.items()},
        notes,
        rejected,
    )


def _teachers(teaching: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each class's teacher: its first primary=true teacher enrollment, failing that its first
    teacher enrollment in file order (those classes are returned too, for a warning)."""
    is_primary = _lower("primary") == "true"
    ordered = teaching.sort(is_primary.fill_null(False), LINE, descending=[True, False])
    chosen = ordered.unique("classSourcedId", keep="first", maintain_order=True).select(
        pl.col("classSourcedId").alias("sourcedId"),
        pl.col("userSourcedId").alias("teacher_id"),
        pl.col(LINE).alias(TEACHER_LINE),
        is_primary.fill_null(False).alias("_primary"),
    )
    return chosen.drop("_primary"), chosen.filter(~pl.col("_primary")).sort(TEACHER_LINE)


def _within_dates(
    enrollments: pl.DataFrame, upload_date: date
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Enrollments current on the upload date (a blank bound is open); those whose dates
    cannot be read; and how many are outside their dates (absent, not rejected)."""
    bounds = {}
    for column in ("beginDate", "endDate"):
        text = pl.col(column)
        bounds[column] = text.str.extract(f"({ONEROSTER_DATE})", 1).str.strptime(
            pl.Date, "%Y-%m-%d", strict=False
        )
    unreadable = pl.any_horizontal(pl.col(c).is_not_null() & bounds[c].is_null() for c in bounds)
    current = (bounds["beginDate"].is_null() | (bounds["beginDate"] <= upload_date)) & (
        bounds["endDate"].is_null() | (bounds["endDate"] >= upload_date)
    )
    bad = enrollments.filter(unreadable)
    readable = enrollments.filter(~unreadable)
    within = readable.filter(current)
    return pl.concat([within, bad]).sort(LINE), bad, readable.height - within.height


def _outside_dates(count: int, upload_date: date) -> Rejection:
    return Rejection(
        "enrollments.csv", None, "beginDate/endDate",
        f"{count} {'enrollment was' if count == 1 else 'enrollments were'} not applied: "
        f"outside their beginDate/endDate on the upload date ({upload_date})",
        None, "Nothing to fix: an enrollment counts from its beginDate to its endDate.", "note",
    )  # fmt: skip


def _problem(
    frame: pl.DataFrame,
    entity: str,
    file: str,
    line: str,
    column: str,
    rule: str,
    value: pl.Expr,
    fix: pl.Expr | str,
    native_column: str,
) -> pl.DataFrame:
    """Rows of `frame` (native `entity` rows, by their `_line`) rejected by the mapping."""
    return frame.select(
        pl.lit(file).alias("file"),
        pl.col(line).cast(pl.Int64).alias("line"),
        pl.lit(column).alias("column"),
        pl.lit(rule).alias("rule"),
        value.cast(pl.String).alias("value"),
        (pl.lit(fix) if isinstance(fix, str) else fix).alias("fix"),
        pl.lit("row").alias("level"),
        pl.lit(entity).alias("entity"),
        pl.col(LINE).cast(pl.Int64),
        pl.lit(native_column).alias("native_column"),
    ).cast(format_rejections().schema)


def _user_org_problems(users: pl.DataFrame) -> pl.DataFrame:
    """A user's orgSourcedIds must name orgs of orgs.csv, and a student's a school."""
    role = _lower("role")
    unknown = users.filter(pl.col("_unknown_org").is_not_null() & pl.col("campus_id").is_null())
    no_school = users.filter(
        pl.col("_unknown_org").is_null() & pl.col("campus_id").is_null() & (role == "student")
    )
    out = []
    for entity, is_entity in (("students", role == "student"), ("staff", role.is_in(STAFF_ROLES))):
        out.append(_problem(
            unknown.filter(is_entity), entity, "users.csv", LINE, "orgSourcedIds",
            "orgSourcedIds must name orgs of orgs.csv", pl.col("_unknown_org"),
            "Add the org to orgs.csv, or correct orgSourcedIds (sourcedIds of orgs, comma "
            "separated).", "campus_id",
        ))  # fmt: skip
    out.append(_problem(
        no_school, "students", "users.csv", LINE, "orgSourcedIds",
        "a student must belong to a school: no org in orgSourcedIds has type=school",
        pl.col("orgSourcedIds"),
        "Add the sourcedId of the student's school (an org with type=school) to orgSourcedIds.",
        "campus_id",
    ))  # fmt: skip
    return pl.concat(out)


def _class_school_problems(classes: pl.DataFrame, org_types: pl.DataFrame) -> pl.DataFrame:
    """A class's schoolSourcedId must be an org of type school."""
    typed = classes.join(org_types, left_on="schoolSourcedId", right_on="_org", how="left")
    not_an_org = typed.filter(pl.col("schoolSourcedId").is_not_null() & pl.col("_type").is_null())
    not_a_school = typed.filter(pl.col("_type").is_not_null() & (pl.col("_type") != "school"))
    return pl.concat([
        _problem(
            not_an_org, "classes", "classes.csv", LINE, "schoolSourcedId",
            "schoolSourcedId must be the sourcedId of an org in orgs.csv",
            pl.col("schoolSourcedId"),
            "Add the school to orgs.csv (type=school), or correct schoolSourcedId.", "campus_id",
        ),
        _problem(
            not_a_school, "classes", "classes.csv", LINE, "schoolSourcedId",
            "schoolSourcedId must be an org of type=school", pl.col("schoolSourcedId"),
            pl.format("That org is of type={} in orgs.csv: give the sourcedId of the class's "
                      "school instead.", pl.col("_type")), "campus_id",
        ),
    ])  # fmt: skip


def _wrong_roles(tables: dict[str, pl.DataFrame], roles: pl.DataFrame) -> pl.DataFrame:
    """A role=teacher enrollment must name a staff user, a role=student one a student."""
    staff_roles = list(STAFF_ROLES)
    out = []
    for entity, column, line, wanted, says in (
        ("classes", "teacher_id", TEACHER_LINE, staff_roles, "role=teacher"),
        ("co_teachers", "staff_id", LINE, staff_roles, "role=teacher"),
        ("enrollments", "student_id", LINE, ["student"], "role=student"),
    ):
        found = (
            tables[entity]
            .join(roles.rename({LINE: "_user_line"}), left_on=column, right_on="_user", how="inner")
            .filter(~pl.col("_role").is_in(wanted))
        )
        out.append(_problem(
            found, entity, "enrollments.csv", line, "userSourcedId",
            f"a {says} enrollment must name a user whose role is "
            + ("teacher, aide or administrator" if wanted == staff_roles else "student"),
            pl.col(column),
            pl.format("users.csv line {} gives this user role={}: correct the enrollment's "
                      "role or the user's.", pl.col("_user_line"), pl.col("_role")),
            column,
        ))  # fmt: skip
    return pl.concat(out)


def _date_problems(bad: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """An enrollment whose beginDate or endDate is not a date: the row it became is rejected."""
    lines = bad.get_column(LINE).implode()
    rule = "beginDate and endDate must be dates written YYYY-MM-DD"
    fix = "Write the dates as YYYY-MM-DD, e.g. 2026-08-15, or leave them blank."
    value = pl.lit(None, pl.String)
    out = [
        _problem(tables[e].filter(pl.col(LINE).is_in(lines)), e, "enrollments.csv", LINE,
                 "beginDate/endDate", rule, value, fix, c)
        for e, c in (("enrollments", "student_id"), ("co_teachers", "staff_id"))
    ]  # fmt: skip
    out.append(_problem(
        tables["classes"].filter(pl.col(TEACHER_LINE).is_in(lines)), "classes",
        "enrollments.csv", TEACHER_LINE, "beginDate/endDate", rule, value, fix, "teacher_id",
    ))  # fmt: skip
    return pl.concat(out)


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


_NO_DEMOGRAPHICS = pl.DataFrame(
    schema={"sourcedId": pl.String, "birthDate": pl.String, "sex": pl.String, LINE: pl.Int64}
)


def _students(users: pl.DataFrame, read: dict[str, pl.DataFrame]) -> pl.DataFrame:
    demographics = (
        _current(read.get("demographics.csv", _NO_DEMOGRAPHICS))
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
        .filter(year.str.contains(r"^\d{4}(-\d{4})?$"))
        .sort(LINE)
        .unique("sourcedId", keep="first")
        .select(
            pl.col("sourcedId").alias("_session"),
            pl.when(year.str.contains(r"^\d{4}$"))
            .then(pl.format("{}-{}", year.cast(pl.Int64, strict=False) - 1, year))
            .when(year.str.contains(r"^\d{4}-\d{4}$"))
            .then(year)
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


def _campus_of_users(
    users: pl.DataFrame, school_of: pl.DataFrame, org_types: pl.DataFrame
) -> pl.DataFrame:
    """The first of a user's orgSourcedIds that is a school, as its campus_id (none when the
    user belongs to no school: district-level staff); `_unknown_org`, the first listed org
    that orgs.csv does not have."""
    orgs = (
        users.select(LINE, pl.col("orgSourcedIds").str.split(",").alias("_org"))
        .explode("_org", empty_as_null=True)
        .with_columns(pl.col("_org").str.strip_chars())
        .join(school_of, on="_org", how="left", maintain_order="left")
        .join(org_types, on="_org", how="left", maintain_order="left")
    )
    unknown = pl.col("_org").filter(pl.col("_org").is_not_null() & pl.col("_type").is_null())
    return orgs.group_by(LINE).agg(
        pl.col("identifier").drop_nulls().first().alias("campus_id"),
        unknown.first().alias("_unknown_org"),
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
