"""Where each native value of a OneRoster upload came from, so rejections name OneRoster.

The rules judge native tables and speak of `students.csv` and `birth_date`; the LEA sent
`demographics.csv` and `birthDate`. `name_sources` rewrites each rejection's file, line and
column to the OneRoster ones, and its fix where OneRoster spells the remedy differently.
The rule itself keeps the spec's words: it is the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..files import BY_ENTITY
from ..hints import LEADING_ZERO, RESAVED_DATE
from ..integrity import CO_TEACHER_IS_TEACHER_FIX, REFERENCES
from ..reading import LINE
from ..rejections import REJECTION_SCHEMA
from ..rules import REQUIRED
from .oneroster_tables import DEMOGRAPHICS_LINE, SESSION_LINE, STATE_ID_COLUMN, TEACHER_LINE

#: The OneRoster file each native row comes from, and the column that identifies it there.
PRIMARY = {
    "campuses": "orgs.csv",
    "staff": "users.csv",
    "students": "users.csv",
    "classes": "classes.csv",
    "enrollments": "enrollments.csv",
    "co_teachers": "enrollments.csv",
}
SCHOOL = "Use the school's 9-digit campus number as its identifier in orgs.csv (type=school)."
STATE_ID = "Give the 10-digit TX unique ID as {TX:…} in userIds or in metadata.stateUniqueId."
PRIMARY_TWICE = "This teacher is the class's primary teacher already: remove the repeated row."


@dataclass(frozen=True)
class Absent:
    """What to say when the other file has no row for this one (no line to point at)."""

    column: str
    value_from: str  # native column whose value identifies the row
    rule: str
    fix: str


@dataclass(frozen=True)
class Source:
    file: str
    column: str
    line_from: str = LINE  # the table column holding the line in `file`
    column_from: str | None = None  # a table column naming the OneRoster column per row
    fix: str | None = None  # the remedy in OneRoster's terms, when the native one misleads
    absent: Absent | None = None


SOURCES: dict[tuple[str, str], Source] = {
    ("campuses", "campus_id"): Source("orgs.csv", "identifier", fix=SCHOOL),
    ("campuses", "campus_name"): Source("orgs.csv", "name"),
    ("staff", "staff_id"): Source("users.csv", "sourcedId"),
    ("staff", "first_name"): Source("users.csv", "givenName"),
    ("staff", "last_name"): Source("users.csv", "familyName"),
    ("staff", "email"): Source("users.csv", "email"),
    ("staff", "campus_id"): Source("users.csv", "orgSourcedIds", fix=SCHOOL),
    ("staff", "role"): Source("users.csv", "role"),
    ("staff", "state_staff_id"): Source(
        "users.csv", "userIds", column_from=STATE_ID_COLUMN, fix=STATE_ID
    ),
    ("students", "student_id"): Source("users.csv", "sourcedId"),
    ("students", "state_id"): Source(
        "users.csv", "userIds", column_from=STATE_ID_COLUMN, fix=STATE_ID
    ),
    ("students", "first_name"): Source("users.csv", "givenName"),
    ("students", "middle_name"): Source("users.csv", "middleName"),
    ("students", "last_name"): Source("users.csv", "familyName"),
    ("students", "birth_date"): Source(
        "demographics.csv",
        "birthDate",
        line_from=DEMOGRAPHICS_LINE,
        fix="Write birthDate as YYYY-MM-DD, e.g. 2015-09-01.",
    ),
    ("students", "gender"): Source(
        "demographics.csv",
        "sex",
        line_from=DEMOGRAPHICS_LINE,
        fix="Use female, male or other in sex, or leave it blank.",
    ),
    ("students", "grade"): Source(
        "users.csv", "grades", fix="Use a CEDS grade code in grades: IT, PR, PK, KG or 01–12."
    ),
    ("students", "campus_id"): Source("users.csv", "orgSourcedIds", fix=SCHOOL),
    ("classes", "class_id"): Source("classes.csv", "sourcedId"),
    ("classes", "campus_id"): Source("classes.csv", "schoolSourcedId", fix=SCHOOL),
    ("classes", "class_name"): Source("classes.csv", "title"),
    ("classes", "teacher_id"): Source(
        "enrollments.csv",
        "userSourcedId",
        line_from=TEACHER_LINE,
        absent=Absent(
            "sourcedId",
            "class_id",
            "the class has no role=teacher enrollment (teacher_id is required)",
            "Add a role=teacher enrollment for this class to enrollments.csv "
            "(classSourcedId = this sourcedId, primary=true).",
        ),
    ),
    ("classes", "grade"): Source(
        "classes.csv", "grades", fix="Use a CEDS grade code in grades: IT, PR, PK, KG or 01–12."
    ),
    ("classes", "school_year"): Source(
        "academicSessions.csv",
        "schoolYear",
        line_from=SESSION_LINE,
        fix="Write schoolYear as the year the school year ends, e.g. 2027.",
    ),
    ("enrollments", "class_id"): Source("enrollments.csv", "classSourcedId"),
    ("enrollments", "student_id"): Source("enrollments.csv", "userSourcedId"),
    ("co_teachers", "class_id"): Source("enrollments.csv", "classSourcedId"),
    ("co_teachers", "staff_id"): Source("enrollments.csv", "userSourcedId"),
}
#: Where the target of each native reference lives in OneRoster.
TARGETS = {"campuses": "orgs.csv (type=school)", "staff": "users.csv", "students": "users.csv"}
KEPT_FIXES = (LEADING_ZERO, RESAVED_DATE)
REJECTED_LINE = r"was itself rejected: see \S+ line (\d+);"


def name_sources(
    rejections: pl.DataFrame, tables: dict[str, pl.DataFrame], rejected_rows: pl.DataFrame
) -> pl.DataFrame:
    """Rejections of the native tables renamed to the OneRoster file, line and column.

    `rejected_rows` are the rows the mapping rejected itself: a row that refers to one of
    them, or to a row the rules rejected, is told where that row's rejection is reported."""
    native_file = pl.col("entity").replace_strict(
        {e: s.file_name for e, s in BY_ENTITY.items()}, default=None
    )
    mine = (pl.col("file") == native_file).fill_null(False)
    renamed = [
        _rename(entity, column, group, tables[entity])
        for (entity, column), group in rejections.filter(mine).group_by(
            "entity", "column", maintain_order=True
        )
    ]
    if not renamed:
        return rejections
    ordered = _point_at_rejected_targets(pl.concat(renamed), rejected_rows)
    ordered = ordered.sort("file", "line", maintain_order=True).select(list(REJECTION_SCHEMA))
    return pl.concat([rejections.filter(~mine), ordered]).cast(REJECTION_SCHEMA)


def _point_at_rejected_targets(renamed: pl.DataFrame, rejected_rows: pl.DataFrame) -> pl.DataFrame:
    """ "That sourcedId was itself rejected: see users.csv line 7": the native fix names the
    target's native line; here it becomes the place the target's own rejection is shown."""
    places = pl.concat(
        [
            renamed.select("entity", "_native_line", "file", "line"),
            rejected_rows.select("entity", pl.col(LINE).alias("_native_line"), "file", "line"),
        ]
    ).unique(["entity", "_native_line"], keep="first", maintain_order=True)
    places = places.select(
        pl.col("entity").alias("_ref_target"),
        pl.col("_native_line").alias("_target_native"),
        pl.col("file").alias("_target_file"),
        pl.col("line").alias("_target_line"),
    )
    target_native = pl.col("fix").str.extract(REJECTED_LINE, 1).cast(pl.Int64)
    joined = renamed.with_columns(
        pl.when(pl.col("_ref_target").is_not_null()).then(target_native).alias("_target_native")
    ).join(places, on=["_ref_target", "_target_native"], how="left", maintain_order="left")
    fallback = pl.col("_ref_target").replace_strict({e: PRIMARY[e] for e in PRIMARY}, default=None)
    pointed = pl.format(
        "That {} was itself rejected: see {} line {}; fix that row and this one is accepted "
        "with it.",
        pl.col("column"),
        pl.coalesce("_target_file", fallback),
        pl.coalesce("_target_line", "_target_native"),
    )
    return joined.with_columns(
        pl.when(pl.col("_target_native").is_not_null()).then(pointed).otherwise(pl.col("fix"))
        .alias("fix")
    )  # fmt: skip


def _rename(entity: str, column: str, group: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    source = SOURCES.get((entity, column), Source(PRIMARY[entity], column))
    wanted = {LINE, source.line_from, *([source.column_from] if source.column_from else [])}
    if source.absent:
        wanted.add(source.absent.value_from)
    found = table.select(sorted(wanted)).with_columns(pl.col(LINE).alias("_row"))
    joined = group.join(found, left_on="line", right_on="_row", how="left")
    has_source = pl.col(source.line_from).is_not_null()
    own_column = pl.col(source.column_from) if source.column_from else pl.lit(source.column)
    fix, rule = _fix(entity, column, source), pl.col("rule")
    if source.absent:
        absent = source.absent
        file = pl.when(has_source).then(pl.lit(source.file)).otherwise(pl.lit(PRIMARY[entity]))
        line = pl.when(has_source).then(pl.col(source.line_from)).otherwise(pl.col("line"))
        own_column = pl.when(has_source).then(own_column).otherwise(pl.lit(absent.column))
        value = pl.when(has_source).then(pl.col("value")).otherwise(pl.col(absent.value_from))
        fix = pl.when(has_source).then(fix).otherwise(pl.lit(absent.fix))
        rule = pl.when(has_source).then(rule).otherwise(pl.lit(absent.rule))
    else:
        file, line, value = pl.lit(source.file), pl.col(source.line_from), pl.col("value")
    target = next((r.target for r in REFERENCES if (r.entity, r.column) == (entity, column)), None)
    return joined.select(
        file.alias("file"),
        line.alias("line"),
        own_column.alias("column"),
        rule.alias("rule"),
        value.alias("value"),
        fix.alias("fix"),
        "level",
        "entity",
        pl.col("line").alias("_native_line"),
        pl.lit(target, pl.String).alias("_ref_target"),
    )


def _fix(entity: str, column: str, source: Source) -> pl.Expr:
    """The native fix, unless OneRoster words it differently for this column or rule."""
    fix = pl.col("fix")
    cases: list[tuple[pl.Expr, str]] = [
        (pl.col("rule") == REQUIRED, f"Fill in {source.column} in {source.file}; it is required.")
    ]
    for ref in REFERENCES:
        if (ref.entity, ref.column) == (entity, column):
            target = TARGETS.get(ref.target, PRIMARY[ref.target])
            cases.append((fix == ref.absent_fix, f"Add the row to {target}, or correct the "
                          f"{source.column} here."))  # fmt: skip
    if (entity, column) == ("co_teachers", "staff_id"):
        cases.append((fix == CO_TEACHER_IS_TEACHER_FIX, PRIMARY_TWICE))
    kept = fix.is_in(KEPT_FIXES) | fix.str.contains(REJECTED_LINE)
    out = pl.when(kept).then(fix)
    for condition, words in cases:
        out = out.when(condition).then(pl.lit(words))
    return out.otherwise(pl.lit(source.fix) if source.fix else fix)
