"""An upload's files in, accepted rows and rejections out: the whole of UPLOAD_SPEC's checking.

Every format meets in `check_tables`: its reader (`formats/`) turns the upload into the
native tables, and then the same rules judge them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandera.polars as pa
import polars as pl

from . import hints
from .archive import DEFAULT_LIMITS, ZipLimits
from .files import BY_ENTITY, CAMPUSES, STAFF, UPLOAD_FILES, UploadFile
from .formats import ReadOptions, ReadUpload, read_upload
from .formats.oneroster import DEFAULT_CLASS_TYPES
from .integrity import CO_TEACHER_IS_TEACHER, REFERENCES, broken_references, co_teacher_is_teacher
from .reading import LINE
from .rejections import REJECTION_SCHEMA, capped, rejection_frame
from .rules import (
    NATIVE,
    NORMAL_GRADE,
    PARSED_BIRTH_DATE,
    REQUIRED,
    Dialect,
    derived_columns,
    may_hold_control_characters,
    rules_for,
    schema_for,
    without_control_characters,
)

PAIRS = ("enrollments", "co_teachers")


@dataclass
class ValidatedUpload:
    """What validation decided: the rows to apply, and every rejection with its place."""

    lea_id: str
    tables: dict[str, pl.DataFrame]
    rejections: pl.DataFrame
    rejected_keys: dict[str, pl.DataFrame] = field(default_factory=dict)
    format: str = "native"

    @property
    def accepted(self) -> bool:
        return self.rejections.filter(pl.col("level") == "upload").is_empty()


def validate_upload(
    lea_id: str,
    files: dict[str, bytes],
    upload_date: date,
    *,
    class_types: tuple[str, ...] = DEFAULT_CLASS_TYPES,
    zip_limits: ZipLimits = DEFAULT_LIMITS,
    taken_logins: frozenset[str] | Callable[[frozenset[str]], frozenset[str]] = frozenset(),
) -> ValidatedUpload:
    """Check every file against the spec; nothing here raises for bad data.

    `class_types` are the OneRoster class types that create classes (a per-LEA setting).
    `taken_logins` are the lower-cased logins of other LEAs' staff accounts: a staff row whose
    email is one of them is rejected, so two LEAs never share (or merge) one account. Given a
    function, it is asked once which of the upload's own lower-cased staff emails are taken.
    A rejection quotes at most MAX_QUOTED_CHARS characters of a value or column name.
    """
    read = read_upload(files, ReadOptions(lea_id, upload_date, class_types, zip_limits))
    if read.tables is None:
        validated = ValidatedUpload(lea_id, {}, read.notes, {}, read.format)
    else:
        control = any(may_hold_control_characters(data) for data in files.values())
        if callable(taken_logins):
            emails = read.tables[STAFF.entity]["email"].drop_nulls().str.to_lowercase()
            taken_logins = taken_logins(frozenset(emails.to_list()))
        validated = check_tables(
            lea_id, read, upload_date, taken_logins, control_characters=control
        )
    # The one place every rejection passes before quality.rejections and the report.
    validated.rejections = capped(validated.rejections)
    return validated


def check_tables(
    lea_id: str,
    read: ReadUpload,
    upload_date: date,
    taken_logins: frozenset[str] = frozenset(),
    *,
    control_characters: bool = True,
) -> ValidatedUpload:
    """Row rules, then the other-LEA campus check, then every cross-file reference.

    Every rejected row's key is kept (`rejected_keys`): a rejected row is never read as a
    drop, and a row that refers to it is told so, with its line. `control_characters` False
    says the upload's bytes hold none, so no value is searched for one."""
    raw = read.tables
    assert raw is not None
    rejections: list[pl.DataFrame] = []
    tables: dict[str, pl.DataFrame] = {}
    rejected_rows: dict[str, pl.DataFrame] = {}
    by_format = read.rejected_rows
    for spec in UPLOAD_FILES:
        frame = raw[spec.entity].with_columns(**derived_columns(spec))
        mapped = by_format.filter(pl.col("entity") == spec.entity)
        bad = _row_rule_failures(
            lea_id, spec, frame, upload_date, taken_logins, read.dialect, control_characters
        )
        # A row the format rejected for a column is told that once, not again by the rules.
        bad = bad.join(
            mapped.select(pl.col(LINE).alias("line"), pl.col("native_column").alias("column")),
            on=["line", "column"],
            how="anti",
        )
        rejections.append(bad)
        lines = pl.concat([bad["line"], mapped[LINE]])
        tables[spec.entity], rejected_rows[spec.entity] = _split(frame, lines)
    other_lea = _campuses_of_other_leas(lea_id, tables["campuses"])
    if not other_lea.is_empty():
        return ValidatedUpload(
            lea_id, {}, pl.concat([read.notes, read.name_sources(other_lea)]), {}, read.format
        )

    for entity in PAIRS:  # a pair listed twice counts once
        tables[entity] = _first_of_each_pair(tables[entity], BY_ENTITY[entity].key)
    for ref in REFERENCES:
        rows = tables[ref.entity]
        spec = BY_ENTITY[ref.entity]
        broken = broken_references(ref, rows, tables[ref.target], rejected_rows[ref.target])
        rejections.append(_as_rejections(broken, spec, ref.column, ref.rule))
        tables[ref.entity], newly = _split(rows, broken[LINE])
        rejected_rows[ref.entity] = pl.concat([rejected_rows[ref.entity], newly])
    same = co_teacher_is_teacher(tables["co_teachers"], tables["classes"])
    rejections.append(
        _as_rejections(same, BY_ENTITY["co_teachers"], "staff_id", CO_TEACHER_IS_TEACHER)
    )
    tables["co_teachers"] = tables["co_teachers"].filter(~pl.col(LINE).is_in(same[LINE].implode()))

    named = read.name_sources(pl.concat(rejections))
    return ValidatedUpload(
        lea_id,
        {entity: _normalize(entity, frame) for entity, frame in tables.items()},
        pl.concat([read.notes, named, by_format.select(list(REJECTION_SCHEMA))]),
        {entity: frame.select(BY_ENTITY[entity].key) for entity, frame in rejected_rows.items()},
        read.format,
    )


def _first_of_each_pair(frame: pl.DataFrame, key: tuple[str, ...]) -> pl.DataFrame:
    """The first row of each key; distinct row hashes mean distinct keys, so the (slower)
    exact search runs only when two rows share a hash."""
    if frame.select(key).hash_rows().n_unique() == frame.height:
        return frame
    return frame.filter(pl.struct(key).is_first_distinct())


def _split(frame: pl.DataFrame, lines: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows not on `lines`, and those on them (no copying when no line is named)."""
    if lines.is_empty():
        return frame, frame.clear()
    named = pl.col(LINE).is_in(lines.implode())
    return frame.filter(~named), frame.filter(named)


def _row_rule_failures(
    lea_id: str,
    spec: UploadFile,
    frame: pl.DataFrame,
    upload_date: date,
    taken_logins: frozenset[str] = frozenset(),
    dialect: Dialect = NATIVE,
    control_characters: bool = True,
) -> pl.DataFrame:
    """Every row rule of the file in one pandera pass; failures become rejections in bulk."""
    rules = rules_for(
        spec, upload_date, taken_logins, dialect, control_characters=control_characters
    )
    schema = schema_for(
        spec, upload_date, taken_logins, dialect, control_characters=control_characters
    )
    try:
        schema.validate(frame, lazy=True)
        return rejection_frame()
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.filter(pl.col("index").is_not_null())
    fixes = pl.DataFrame(
        {
            "check": [r.error for r in rules],
            "rule_fix": [r.fix for r in rules],
        }
    ).unique("check", keep="first")
    required = pl.col("check") == "not_nullable"
    value = without_control_characters(pl.col("failure_case").cast(pl.String))
    return (
        cases.join(fixes, on="check", how="left")
        .select(
            pl.lit(spec.file_name).alias("file"),
            pl.lit(frame.get_column(LINE)).gather(pl.col("index")).alias("line"),
            pl.col("column"),
            pl.when(required).then(pl.lit(REQUIRED)).otherwise(pl.col("check")).alias("rule"),
            value.alias("value"),
            pl.coalesce(
                hints.likely_cause(lea_id, pl.col("column"), value),
                pl.when(required)
                .then(pl.format("Fill in {}; it is required.", pl.col("column")))
                .otherwise(pl.col("rule_fix")),
                pl.lit(""),
            ).alias("fix"),
            pl.lit("row").alias("level"),
            pl.lit(spec.entity).alias("entity"),
        )
        .cast(REJECTION_SCHEMA)
        .sort("line", "column", maintain_order=True)
    )


def _campuses_of_other_leas(lea_id: str, campuses: pl.DataFrame) -> pl.DataFrame:
    foreign = campuses.filter(~pl.col("campus_id").str.starts_with(lea_id))
    return _as_rejections(
        foreign.select(
            LINE,
            pl.col("campus_id").alias("value"),
            pl.lit(
                f"This upload arrived in LEA {lea_id}'s folder: send each LEA's campuses "
                "from that LEA's own SFTP account."
            ).alias("fix"),
        ),
        CAMPUSES,
        "campus_id",
        "campus_id belongs to another LEA",
        level="upload",
    )


def _as_rejections(
    broken: pl.DataFrame, spec: UploadFile, column: str, rule: str, level: str = "row"
) -> pl.DataFrame:
    return broken.select(
        pl.lit(spec.file_name).alias("file"),
        pl.col(LINE).alias("line"),
        pl.lit(column).alias("column"),
        pl.lit(rule).alias("rule"),
        pl.col("value"),
        pl.col("fix"),
        pl.lit(level).alias("level"),
        pl.lit(spec.entity).alias("entity"),
    ).cast(REJECTION_SCHEMA)


def _normalize(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Accepted rows in canonical form: grades, dates, roles, emails and codes spelled one way."""
    spec = BY_ENTITY[entity]
    if entity == "students":
        frame = frame.with_columns(
            pl.col(PARSED_BIRTH_DATE).alias("birth_date"),
            pl.col(NORMAL_GRADE).alias("grade"),
            pl.col("gender").str.to_uppercase(),
        )
    elif entity == "classes":
        frame = frame.with_columns(pl.col(NORMAL_GRADE).alias("grade"))
    elif entity == "staff":
        frame = frame.with_columns(
            pl.col("role").str.to_lowercase().fill_null("teacher"),
            pl.col("email").str.to_lowercase(),
        )
    return frame.select(*spec.columns, LINE)
