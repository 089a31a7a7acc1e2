"""diff_entity: an upload's accepted rows against the applied rows of one entity; kept_keys:
the applied rows the diff must not read as drops."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline.decision import WHY
from rostering_pipeline.roster.diff import CHANGE_SCHEMA, diff_entity, kept_keys
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
    assert_frame_equal(result.replaced, pl.DataFrame({"student_id": ["S1"]}))  # not the add S3
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
    assert result.replaced.is_empty()
    expected = changes(("C1|S3", "add", None, "{}", 3), ("C1|S2", "drop", "{}", None, None))
    assert_frame_equal(result.changes, expected)


# -- kept_keys: the keys a diff must not read as drops --------------------------------------


def applied(**rows: list[dict[str, str | None]]) -> dict[str, pl.DataFrame]:
    """Applied rows the upload left out (the drop candidates), every entity, every column."""
    return {
        entity: pl.DataFrame(
            [{c: row.get(c) for c in spec.columns} for row in rows.get(entity, [])],
            schema=dict.fromkeys(spec.columns, pl.String),
        )
        for entity, spec in BY_ENTITY.items()
    }


def kept(entity: str, *rows: tuple[tuple[str, ...], str]) -> pl.DataFrame:
    key = BY_ENTITY[entity].key
    return pl.DataFrame(
        [dict(zip((*key, WHY), (*values, why), strict=True)) for values, why in rows],
        schema={**dict.fromkeys(key, pl.String), WHY: pl.String},
    )


def assert_kept(result: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    assert set(result) == set(BY_ENTITY)
    for entity in BY_ENTITY:
        want = expected.get(entity, kept(entity))
        assert_frame_equal(result[entity], want, check_row_order=False)


def test_nothing_rejected_keeps_nothing() -> None:
    candidates = applied(students=[{"student_id": "S1", "campus_id": "K1"}])

    assert_kept(kept_keys({}, candidates), {})


def test_a_rejected_student_keeps_itself_and_its_enrollments_and_they_their_class() -> None:
    rejected = {"students": pl.DataFrame({"student_id": ["S2"]})}
    candidates = applied(
        students=[{"student_id": "S1"}, {"student_id": "S2"}],
        enrollments=[
            {"class_id": "C1", "student_id": "S1"},
            {"class_id": "C1", "student_id": "S2"},
        ],
    )

    result = kept_keys(rejected, candidates)

    assert_kept(
        result,
        {
            "students": kept("students", (("S2",), "rejected")),
            "enrollments": kept("enrollments", (("C1", "S2"), "hangs off a rejected row")),
            "classes": kept("classes", (("C1",), "named by a kept row")),
        },
    )


def test_a_rejected_class_keeps_what_hangs_off_it_and_the_chain_it_names() -> None:
    """Class → its enrollments and co-teachers → their students and staff → the campuses
    those name: each link found, however long the chain."""
    rejected = {"classes": pl.DataFrame({"class_id": ["C1"]})}
    candidates = applied(
        campuses=[{"campus_id": "K1"}, {"campus_id": "K2"}, {"campus_id": "K3"}],
        staff=[{"staff_id": "T1", "campus_id": "K2"}, {"staff_id": "T2", "campus_id": "K2"}],
        classes=[
            {"class_id": "C1", "campus_id": "K1", "teacher_id": "T1"},
            {"class_id": "C2", "campus_id": "K3", "teacher_id": "T3"},
        ],
        enrollments=[
            {"class_id": "C1", "student_id": "S1"},
            {"class_id": "C2", "student_id": "S2"},
        ],
        co_teachers=[{"class_id": "C1", "staff_id": "T2"}],
    )

    result = kept_keys(rejected, candidates)

    named = "named by a kept row"
    assert_kept(
        result,
        {
            "classes": kept("classes", (("C1",), "rejected")),
            "enrollments": kept("enrollments", (("C1", "S1"), "hangs off a rejected row")),
            "co_teachers": kept("co_teachers", (("C1", "T2"), "hangs off a rejected row")),
            "students": kept("students", (("S1",), named)),
            "staff": kept("staff", (("T1",), named), (("T2",), named)),
            "campuses": kept("campuses", (("K1",), named), (("K2",), named)),
        },
    )
