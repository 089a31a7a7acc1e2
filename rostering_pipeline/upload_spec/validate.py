"""An upload's files in, accepted rows and rejections out: the whole of UPLOAD_SPEC's checking.

Both formats meet in `check_tables`: a native upload is read file by file, a OneRoster bulk
set is first mapped onto the native tables, and then the same rules judge both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import PurePosixPath

import pandera.polars as pa
import polars as pl

from . import hints, oneroster
from .archive import DEFAULT_LIMITS, ZipLimits
from .files import BY_ENTITY, BY_FILE_NAME, CAMPUSES, ENTITIES, UPLOAD_FILES, UploadFile
from .integrity import CO_TEACHER_IS_TEACHER, REFERENCES, broken_references, co_teacher_is_teacher
from .reading import LINE, read_upload_file
from .rejections import REJECTION_SCHEMA, Rejection, UploadRejected, rejection_frame
from .rules import (
    NORMAL_GRADE,
    PARSED_BIRTH_DATE,
    REQUIRED,
    derived_columns,
    rules_for,
    schema_for,
)

WORKBOOK_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")
PAIRS = ("enrollments", "co_teachers")


@dataclass
class ValidatedUpload:
    """What validation decided: the rows to apply, and every rejection with its place."""

    lea_id: str
    tables: dict[str, pl.DataFrame]
    rejections: pl.DataFrame
    rejected_keys: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.rejections.filter(pl.col("level") == "upload").is_empty()

    def rejection_counts(self) -> dict[str, int]:
        rows = self.rejections.filter(pl.col("level") != "warning")
        return {f: rows.filter(pl.col("file") == f).height for f in rows["file"].unique().sort()}


def validate_upload(
    lea_id: str,
    files: dict[str, bytes],
    upload_date: date,
    *,
    class_types: tuple[str, ...] = oneroster.DEFAULT_CLASS_TYPES,
    zip_limits: ZipLimits = DEFAULT_LIMITS,
    taken_logins: frozenset[str] = frozenset(),
) -> ValidatedUpload:
    """Check every file against the spec; nothing here raises for bad data.

    `class_types` are the OneRoster class types that create classes (a per-LEA setting).
    `taken_logins` are the lower-cased logins of other LEAs' staff accounts: a staff row whose
    email is one of them is rejected, so two LEAs never share (or merge) one account.
    """
    if oneroster.is_oneroster(files):
        mapped = oneroster.map_upload(files, class_types=class_types, limits=zip_limits)
        if mapped.tables is None:
            return _rejected(lea_id, [mapped.notes])
        result = check_tables(lea_id, mapped.tables, upload_date, mapped.notes, taken_logins)
        return replace(result, rejections=mapped.name_sources(result.rejections))
    raw, notes = _read_native(files)
    if raw is None:
        return _rejected(lea_id, [notes])
    return check_tables(lea_id, raw, upload_date, notes, taken_logins)


def _read_native(files: dict[str, bytes]) -> tuple[dict[str, pl.DataFrame] | None, pl.DataFrame]:
    """Each native file read into text; None when a file is missing or unreadable."""
    found, notes = _match_files(files)
    raw: dict[str, pl.DataFrame] = {}
    rejections: list[pl.DataFrame] = [rejection_frame(notes)]
    for spec in UPLOAD_FILES:
        if spec.file_name not in found:
            if spec.required:
                rejections.append(rejection_frame([_missing_file(spec, files)]))
            else:
                raw[spec.entity] = empty_table(spec)
            continue
        name, data = found[spec.file_name]
        try:
            read = read_upload_file(spec, data, display_name=name)
        except UploadRejected as rejected:
            rejections.append(rejection_frame(rejected.rejections))
            continue
        rejections.append(rejection_frame(read.warnings))
        raw[spec.entity] = read.frame
    return (raw if len(raw) == len(ENTITIES) else None), pl.concat(rejections)


def check_tables(
    lea_id: str,
    raw: dict[str, pl.DataFrame],
    upload_date: date,
    notes: pl.DataFrame,
    taken_logins: frozenset[str] = frozenset(),
) -> ValidatedUpload:
    """Row rules, then the other-LEA campus check, then every cross-file reference."""
    rejections: list[pl.DataFrame] = [notes]
    tables: dict[str, pl.DataFrame] = {}
    rejected_keys: dict[str, pl.DataFrame] = {}
    for spec in UPLOAD_FILES:
        frame = raw[spec.entity].with_columns(**derived_columns(spec))
        bad = _row_rule_failures(lea_id, spec, frame, upload_date, taken_logins)
        rejections.append(bad)
        tables[spec.entity], rejected_keys[spec.entity] = _split(frame, bad["line"])
    other_lea = _campuses_of_other_leas(lea_id, tables["campuses"])
    if not other_lea.is_empty():
        rejections.append(other_lea)
        return _rejected(lea_id, rejections)

    for entity in PAIRS:  # a pair listed twice counts once
        tables[entity] = _first_of_each_pair(tables[entity], BY_ENTITY[entity].key)
    for ref in REFERENCES:
        rows = tables[ref.entity]
        spec = BY_ENTITY[ref.entity]
        broken = broken_references(
            ref,
            rows,
            tables[ref.target],
            rejected_keys[ref.target].get_column(ref.target_column),
        )
        rejections.append(_as_rejections(broken, spec, ref.column, ref.rule))
        tables[ref.entity] = _split(rows, broken[LINE])[0]
        # A row whose parent was rejected keeps its applied version; one whose parent is
        # simply absent goes with the parent.
        kept = broken.filter(pl.col("parent_rejected"))[LINE].implode()
        rejected_keys[ref.entity] = pl.concat(
            [rejected_keys[ref.entity], rows.filter(pl.col(LINE).is_in(kept))]
        )
    same = co_teacher_is_teacher(tables["co_teachers"], tables["classes"])
    rejections.append(
        _as_rejections(same, BY_ENTITY["co_teachers"], "staff_id", CO_TEACHER_IS_TEACHER)
    )
    tables["co_teachers"] = tables["co_teachers"].filter(~pl.col(LINE).is_in(same[LINE].implode()))

    return ValidatedUpload(
        lea_id,
        {entity: _normalize(entity, frame) for entity, frame in tables.items()},
        pl.concat(rejections),
        {entity: frame.select(BY_ENTITY[entity].key) for entity, frame in rejected_keys.items()},
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


def _match_files(files: dict[str, bytes]) -> tuple[dict[str, tuple[str, bytes]], list[Rejection]]:
    """Spec file names match case-insensitively; other files are reported and ignored."""
    found: dict[str, tuple[str, bytes]] = {}
    notes: list[Rejection] = []
    for name, data in sorted(files.items()):
        spec = BY_FILE_NAME.get(name.strip().lower())
        if spec is not None:
            found[spec.file_name] = (name, data)
            continue
        fix = "This file is not part of the upload format and was ignored."
        if name.lower().endswith(WORKBOOK_SUFFIXES):
            fix = "Spreadsheet workbooks are not read: export each sheet as a CSV file instead."
        notes.append(
            Rejection(name, None, None, "file is not part of the upload", None, fix, "warning")
        )
    return found, notes


def _missing_file(spec: UploadFile, files: dict[str, bytes]) -> Rejection:
    stem = PurePosixPath(spec.file_name).stem
    fix = f"Include {spec.file_name} in every upload; each upload is a full snapshot."
    for name in files:
        if PurePosixPath(name.lower()).stem == stem and name.lower().endswith(WORKBOOK_SUFFIXES):
            fix = f"{name} is a spreadsheet workbook: export it as CSV and upload {spec.file_name}."
    return Rejection(
        spec.file_name, None, None, "required file is missing", None, fix, "upload", spec.entity
    )


def _row_rule_failures(
    lea_id: str,
    spec: UploadFile,
    frame: pl.DataFrame,
    upload_date: date,
    taken_logins: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Every row rule of the file in one pandera pass; failures become rejections in bulk."""
    rules = rules_for(spec, upload_date, taken_logins)
    try:
        schema_for(spec, upload_date, taken_logins).validate(frame, lazy=True)
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
    value = pl.col("failure_case").cast(pl.String)
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


def empty_table(spec: UploadFile) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String for c in spec.columns}, LINE: pl.Int64})


def _rejected(lea_id: str, rejections: list[pl.DataFrame]) -> ValidatedUpload:
    return ValidatedUpload(lea_id, {}, pl.concat(rejections), {})
