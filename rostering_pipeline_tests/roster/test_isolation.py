"""Isolation: an LEA's files change only that LEA's rows, even when they use the same IDs as
another LEA or name another LEA's campuses (DESIGN invariant 4; UPLOAD_SPEC: the LEA is the
folder the files arrived in, never their contents)."""

from __future__ import annotations

from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import day_one

A = "101912"
B = "227901"
TABLES = ("campuses", "staff", "students", "classes", "enrollments", "co_teachers", "accounts")


def _of(lea_id: str) -> dict[str, str]:
    """Day one as LEA `lea_id` sends it: the same staff, student and class IDs as every
    other LEA's day one, its own campuses."""
    return {name: text.replace(A, lea_id) for name, text in day_one().items()}


def _rows(pipeline: Pipeline, lea_id: str) -> dict[str, list[tuple]]:
    return {
        t: pipeline.query(f"select * exclude (upload_id) from roster.{t} where lea_id = ?"
                          " order by all", [lea_id])
        if t != "accounts"
        else pipeline.query("select * from roster.accounts where lea_id = ? order by all", [lea_id])
        for t in TABLES
    }  # fmt: skip


def _only_own_rows_changed(pipeline: Pipeline, b_before: dict[str, list[tuple]]) -> None:
    assert _rows(pipeline, B) == b_before
    assert pipeline.query(
        "select distinct c.lea_id from roster.changes c join ingest.uploads u using (upload_id)"
        " where u.lea_id = ?",
        [A],
    ) in ([], [(A,)])
    assert pipeline.query(
        "select count(*) from quality.rejections r join ingest.uploads u using (upload_id)"
        " where r.lea_id <> u.lea_id"
    ) == [(0,)]


def test_same_ids_in_two_leas_stay_apart(pipeline: Pipeline) -> None:
    pipeline.upload(B, _of(B))
    pipeline.sync()
    b_before = _rows(pipeline, B)
    assert len(b_before["students"]) == 3

    pipeline.upload(A, _of(A))
    assert [r.success for r in pipeline.sync()] == [True]

    _only_own_rows_changed(pipeline, b_before)
    assert pipeline.query("select lea_id, count(*) from roster.students group by 1 order by 1") == [
        (A, 3),
        (B, 3),
    ]


def test_naming_another_leas_campus_rejects_the_upload(pipeline: Pipeline) -> None:
    pipeline.upload(B, _of(B))
    pipeline.upload(A, _of(A))
    pipeline.sync()
    b_before = _rows(pipeline, B)
    a_before = _rows(pipeline, A)
    files = _of(A)
    # LEA A lists B's campus and moves its students there.
    files["campuses.csv"] += f"{B}001,Taken Over Elementary\n"
    files["students.csv"] = files["students.csv"].replace(f"{A}001", f"{B}001")
    pipeline.upload(A, files, day=2)

    assert [r.success for r in pipeline.sync()] == [True]

    assert pipeline.query("select lea_id, status from ingest.uploads order by received_at, 1") == [
        (A, "applied"),
        (B, "applied"),
        (A, "rejected"),
    ]
    assert ("campuses.csv", "upload") in pipeline.query(
        "select file, level from quality.rejections where lea_id = ? and level = 'upload'", [A]
    )
    _only_own_rows_changed(pipeline, b_before)
    assert _rows(pipeline, A) == a_before


def test_rows_pointing_at_another_leas_campus_are_rejected(pipeline: Pipeline) -> None:
    pipeline.upload(B, _of(B))
    pipeline.upload(A, _of(A))
    pipeline.sync()
    b_before = _rows(pipeline, B)
    files = _of(A)
    # A student and a teacher of A's file claim B's campus, which A's campuses.csv lacks.
    files["students.csv"] = files["students.csv"].replace(f"S3,Ivy,Nguyen,2013-07-08,07,{A}002",
                                                          f"S3,Ivy,Nguyen,2013-07-08,07,{B}001")  # fmt: skip
    files["staff.csv"] = files["staff.csv"].replace(f"ben.cole@example.org,{A}002",
                                                    f"ben.cole@example.org,{B}001")  # fmt: skip
    pipeline.upload(A, files, day=2)

    assert [r.success for r in pipeline.sync()] == [True]

    rejected = pipeline.query(
        "select file, \"column\", value from quality.rejections where lea_id = ? and level = 'row'"
        " and value = ?",
        [A, f"{B}001"],
    )
    assert ("students.csv", "campus_id", f"{B}001") in rejected
    assert ("staff.csv", "campus_id", f"{B}001") in rejected
    _only_own_rows_changed(pipeline, b_before)
    assert pipeline.query(
        "select count(*) from roster.students where lea_id = ? and campus_id like ?", [A, f"{B}%"]
    ) == [(0,)]


def test_an_empty_snapshot_drops_nothing_of_another_lea(pipeline: Pipeline) -> None:
    pipeline.upload(B, _of(B))
    pipeline.upload(A, _of(A))
    pipeline.sync()
    b_before = _rows(pipeline, B)
    files = _of(A)
    # A's next upload keeps only its header rows for students and enrollments: a small LEA
    # may drop its few students, but never anyone else's.
    files["students.csv"] = files["students.csv"].splitlines()[0] + "\n"
    files["enrollments.csv"] = files["enrollments.csv"].splitlines()[0] + "\n"
    pipeline.upload(A, files, day=2)

    pipeline.sync()

    _only_own_rows_changed(pipeline, b_before)
