"""An upload's files in, accepted rows and rejections out: the whole of UPLOAD_SPEC's checking."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath

import pandera.polars as pa
import polars as pl

from . import hints
from .files import BY_ENTITY, BY_FILE_NAME, CAMPUSES, ENTITIES, UPLOAD_FILES, UploadFile
from .integrity import CO_TEACHER_IS_TEACHER, REFERENCES, broken_references, co_teacher_is_teacher
from .reading import LINE, read_upload_file
from .rejections import REJECTION_SCHEMA, Rejection, UploadRejected, rejection_frame
from .rules import REQUIRED, fixes_for, normalize_grade, parse_birth_date, required_fix, schema_for

WORKBOOK_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


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


def validate_upload(lea_id: str, files: dict[str, bytes], upload_date: date) -> ValidatedUpload:
    """Check every file against the spec; nothing here raises for bad data."""
    found, notes = _match_files(files)
    raw: dict[str, pl.DataFrame] = {}
    rejections: list[pl.DataFrame] = [rejection_frame(notes)]
    for spec in UPLOAD_FILES:
        if spec.file_name not in found:
            if spec.required:
                rejections.append(rejection_frame([_missing_file(spec, files)]))
            else:
                raw[spec.entity] = _empty(spec)
            continue
        name, data = found[spec.file_name]
        try:
            read = read_upload_file(spec, data, display_name=name)
        except UploadRejected as rejected:
            rejections.append(rejection_frame(rejected.rejections))
            continue
        rejections.append(rejection_frame(read.warnings))
        raw[spec.entity] = read.frame
    if len(raw) < len(ENTITIES):
        return _rejected(lea_id, rejections)

    tables: dict[str, pl.DataFrame] = {}
    rejected_keys: dict[str, pl.DataFrame] = {}
    for spec in UPLOAD_FILES:
        frame = raw[spec.entity]
        bad = _row_rule_failures(lea_id, spec, frame, upload_date)
        rejections.append(bad)
        good = frame.filter(~pl.col(LINE).is_in(bad[("line")].implode()))
        rejected_keys[spec.entity] = frame.filter(pl.col(LINE).is_in(bad["line"].implode()))
        tables[spec.entity] = good
    other_lea = _campuses_of_other_leas(lea_id, tables["campuses"])
    if not other_lea.is_empty():
        rejections.append(other_lea)
        return _rejected(lea_id, rejections)

    for ref in REFERENCES:
        rows = tables[ref.entity]
        spec = BY_ENTITY[ref.entity]
        if ref.entity in ("enrollments", "co_teachers"):
            rows = rows.unique(subset=list(spec.key), keep="first", maintain_order=True)
        broken = broken_references(
            ref,
            rows,
            tables[ref.target],
            rejected_keys[ref.target].get_column(ref.target_column),
        )
        rejections.append(_as_rejections(broken, spec, ref.column, ref.rule))
        tables[ref.entity] = rows.filter(~pl.col(LINE).is_in(broken[LINE].implode()))
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
        _all(rejections),
        {entity: frame.select(BY_ENTITY[entity].key) for entity, frame in rejected_keys.items()},
    )


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
    return Rejection(spec.file_name, None, None, "required file is missing", None, fix, "upload")


def _row_rule_failures(
    lea_id: str, spec: UploadFile, frame: pl.DataFrame, upload_date: date
) -> pl.DataFrame:
    try:
        schema_for(spec, upload_date).validate(frame, lazy=True)
        return rejection_frame()
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    fixes = fixes_for(spec, upload_date)
    lines = frame.get_column(LINE)
    rows = [
        _row_rejection(lea_id, spec, fixes, lines[int(case["index"])], case)
        for case in cases.filter(pl.col("index").is_not_null()).iter_rows(named=True)
    ]
    return rejection_frame(rows).sort("line", "column", maintain_order=True)


def _row_rejection(
    lea_id: str, spec: UploadFile, fixes: dict[str, str], line: int, case: dict
) -> Rejection:
    column, check, value = case["column"], case["check"], case["failure_case"]
    if check == "not_nullable":
        rule, fix = REQUIRED, required_fix(column)
    elif check == "field_uniqueness":
        rule = f"{column} must be unique in the file"
        fix = f"Each row needs its own {column}; every row sharing this one was rejected."
    else:
        rule, fix = check, fixes.get(check, "")
    fix = hints.likely_cause(lea_id, column, value) or fix
    return Rejection(spec.file_name, line, column, rule, value, fix)


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
    ).cast(REJECTION_SCHEMA)


def _normalize(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Accepted rows in canonical form: grades, dates, roles and codes spelled one way."""
    spec = BY_ENTITY[entity]
    frame = frame.select(*spec.columns, LINE)
    if entity == "students":
        frame = frame.with_columns(
            parse_birth_date(pl.col("birth_date")).alias("birth_date"),
            normalize_grade(pl.col("grade")).alias("grade"),
            pl.col("gender").str.to_uppercase(),
        )
    elif entity == "classes":
        frame = frame.with_columns(normalize_grade(pl.col("grade")).alias("grade"))
    elif entity == "staff":
        frame = frame.with_columns(pl.col("role").str.to_lowercase().fill_null("teacher"))
    elif entity in ("enrollments", "co_teachers"):
        frame = frame.unique(subset=list(spec.key), keep="first", maintain_order=True)
    return frame


def _empty(spec: UploadFile) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String for c in spec.columns}, LINE: pl.Int64})


def _all(rejections: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(rejections, how="vertical")


def _rejected(lea_id: str, rejections: list[pl.DataFrame]) -> ValidatedUpload:
    return ValidatedUpload(lea_id, {}, _all(rejections), {})
