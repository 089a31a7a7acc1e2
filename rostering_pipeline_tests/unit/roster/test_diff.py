"""diff_entity: an upload's accepted rows against the applied rows of one entity."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline.roster.diff import CHANGE_SCHEMA, WHY, diff_entity
from rostering_pipeline.upload_spec.files import BY_ENTITY
from rostering_pipeline.upload_spec.reading import LINE

STUDENTS = BY_ENTITY["students"]
VALUES = [c for c in STUDENTS.columns if c not in STUDENTS.key]
LUZ = {"student_id": "S1", "first_name": "Luz", "last_name": "Peña", "birth_date": "2016-03-04",
       "grade": "04", "campus_id": "101912001"}  # fmt: skip
MAX = {**LUZ, "student_id": "S2", "first_name": "Max", "last_name": "Ortiz"}
IVY = {**LUZ, "student_id": "S3", "first_name": "Ivy", "grade": "07"}


def students(*rows: dict[str, str | None]) -> pl.DataFrame:
    """Applied rows: every column of students.csv, blank optional columns null."""
    return pl.DataFrame(
        [{c: row.get(c) for c in STUDENTS.columns} for row in rows],
        schema=dict.fromkeys(STUDENTS.columns, pl.String),
    )


def upload(frame: pl.DataFrame, first_line: int = 2) -> pl.DataFrame:
    """An upload's accepted rows: the rows with their line in the file."""
    lines = pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64, eager=True)
    return frame.with_columns(lines.alias(LINE))


def no_protected(entity: str = "students") -> pl.DataFrame:
    return pl.DataFrame(schema={**dict.fromkeys(BY_ENTITY[entity].key, pl.String), WHY: pl.String})


def values_json(row: dict[str, str | None], columns: list[str]) -> str:
    """The JSON the change log records: the columns in file order, compact."""
    return json.dumps({c: row.get(c) for c in columns}, separators=(",", ":"), ensure_ascii=False)


def changes(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CHANGE_SCHEMA, orient="row")


def test_an_upload_adds_updates_and_drops_against_the_applied_rows() -> None:
    luz_moved_up = {**LUZ, "grade": "05"}
    current = students(LUZ, MAX)
    snapshot = upload(students(luz_moved_up, IVY))

    result = diff_entity("students", current, snapshot, no_protected())

    assert_frame_equal(result.rows, snapshot, check_row_order=False)  # new versions, with lines
    assert_frame_equal(result.drops, pl.DataFrame({"student_id": ["S2"]}))
    expected = changes(
        ("S3", "add", None, values_json(IVY, VALUES), 3),
        ("S1", "update", '{"grade":"04"}', '{"grade":"05"}', 2),
        ("S2", "drop", values_json(MAX, VALUES), None, None),
    )
    assert_frame_equal(result.changes, expected, check_row_order=False)
    assert result.counts == {"add": 1, "update": 1, "drop": 1}
    assert result.withheld_drops == 0


@pytest.mark.parametrize(
    ("old", "new", "recorded"),
    [
        (None, "S-99", ('{"state_id":null}', '{"state_id":"S-99"}')),
        ("S-99", None, ('{"state_id":"S-99"}', '{"state_id":null}')),
        ("S-99", "S-12", ('{"state_id":"S-99"}', '{"state_id":"S-12"}')),
        (None, None, None),  # a blank that stays blank is no change
        ("S-99", "S-99", None),
    ],
)
def test_an_update_records_only_the_columns_that_changed(
    old: str | None, new: str | None, recorded: tuple[str, str] | None
) -> None:
    current = students({**LUZ, "state_id": old})
    snapshot = upload(students({**LUZ, "state_id": new}))

    result = diff_entity("students", current, snapshot, no_protected())

    expected = changes(("S1", "update", *recorded, 2)) if recorded else changes()
    assert_frame_equal(result.changes, expected)


def test_a_protected_key_is_kept_with_its_reason_and_never_dropped() -> None:
    current = students(LUZ, MAX)
    snapshot = upload(students(LUZ))
    protected = pl.DataFrame({"student_id": ["S2", "S9"], WHY: ["rejected", "rejected"]})

    result = diff_entity("students", current, snapshot, protected)

    assert_frame_equal(result.drops, pl.DataFrame(schema={"student_id": pl.String}))
    assert_frame_equal(result.changes, changes())
    # Only an applied row the upload left out is "kept"; S9 was never applied.
    assert_frame_equal(result.kept, pl.DataFrame({"student_id": ["S2"], WHY: ["rejected"]}))


def test_drops_not_allowed_are_withheld_and_counted_while_adds_go_ahead() -> None:
    current = students(LUZ, MAX)
    snapshot = upload(students(LUZ, IVY))

    result = diff_entity("students", current, snapshot, no_protected(), drops_allowed=False)

    assert result.withheld_drops == 1
    assert result.drops.is_empty()
    assert result.counts == {"add": 1, "update": 0, "drop": 0}


def test_a_key_only_entity_has_adds_and_drops_but_no_updates() -> None:
    current = pl.DataFrame({"class_id": ["C1", "C1"], "student_id": ["S1", "S2"]})
    snapshot = upload(pl.DataFrame({"class_id": ["C1", "C1"], "student_id": ["S1", "S3"]}))

    result = diff_entity("enrollments", current, snapshot, no_protected("enrollments"))

    assert_frame_equal(result.rows, snapshot.filter(pl.col("student_id") == "S3"))
    assert_frame_equal(result.drops, pl.DataFrame({"class_id": ["C1"], "student_id": ["S2"]}))
    expected = changes(("C1|S3", "add", None, "{}", 3), ("C1|S2", "drop", "{}", None, None))
    assert_frame_equal(result.changes, expected)
