"""Rules across files: every reference must point at a row that exists and was accepted."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .reading import LINE


@dataclass(frozen=True)
class Reference:
    """`file.column` must name a row of `target` by `target_column`."""

    entity: str
    column: str
    target: str
    target_column: str
    target_file: str

    @property
    def rule(self) -> str:
        return f"{self.column} must be a {self.target_column} in {self.target_file}"

    @property
    def absent_fix(self) -> str:
        return f"Add the row to {self.target_file}, or correct the {self.column} here."

    @property
    def rejected_prefix(self) -> str:
        return f"That {self.target_column} was itself rejected: see {self.target_file} line "

    def rejected_fix(self, line: pl.Expr) -> pl.Expr:
        """Points at the rejected row by its line, so the LEA fixes that row first."""
        return pl.format(
            self.rejected_prefix + "{}; fix that row and this one is accepted with it.", line
        )


#: In dependency order: a row rejected by an earlier reference can break a later one.
REFERENCES: tuple[Reference, ...] = (
    Reference("staff", "campus_id", "campuses", "campus_id", "campuses.csv"),
    Reference("students", "campus_id", "campuses", "campus_id", "campuses.csv"),
    Reference("classes", "campus_id", "campuses", "campus_id", "campuses.csv"),
    Reference("classes", "teacher_id", "staff", "staff_id", "staff.csv"),
    Reference("enrollments", "class_id", "classes", "class_id", "classes.csv"),
    Reference("enrollments", "student_id", "students", "student_id", "students.csv"),
    Reference("co_teachers", "class_id", "classes", "class_id", "classes.csv"),
    Reference("co_teachers", "staff_id", "staff", "staff_id", "staff.csv"),
)

CO_TEACHER_IS_TEACHER = "staff_id must not be the class's own teacher_id"
CO_TEACHER_IS_TEACHER_FIX = "Remove this row: the class's teacher is already named in classes.csv."


def broken_references(
    ref: Reference, rows: pl.DataFrame, accepted: pl.DataFrame, rejected: pl.DataFrame
) -> pl.DataFrame:
    """Rows of `rows` whose reference is missing from `accepted`, with why: the target row was
    rejected (`rejected` holds those rows, with their lines) or is absent. A blank optional
    reference (a district-level staff member's campus) names nothing and is not broken."""
    known = accepted.select(pl.col(ref.target_column).alias(ref.column))
    broken = rows.filter(pl.col(ref.column).is_not_null()).join(known, on=ref.column, how="anti")
    targets = rejected.select(
        pl.col(ref.target_column).alias(ref.column), pl.col(LINE).alias("_target_line")
    ).unique(ref.column, keep="first")
    broken = broken.join(targets, on=ref.column, how="left")
    parent_rejected = pl.col("_target_line").is_not_null()
    return broken.select(
        LINE,
        pl.col(ref.column).alias("value"),
        parent_rejected.alias("parent_rejected"),
        pl.when(parent_rejected)
        .then(ref.rejected_fix(pl.col("_target_line")))
        .otherwise(pl.lit(ref.absent_fix))
        .alias("fix"),
    )


def co_teacher_is_teacher(co_teachers: pl.DataFrame, classes: pl.DataFrame) -> pl.DataFrame:
    joined = co_teachers.join(classes.select("class_id", "teacher_id"), on="class_id", how="inner")
    return joined.filter(pl.col("staff_id") == pl.col("teacher_id")).select(
        LINE,
        pl.col("staff_id").alias("value"),
        pl.lit(False).alias("parent_rejected"),
        pl.lit(CO_TEACHER_IS_TEACHER_FIX).alias("fix"),
    )
