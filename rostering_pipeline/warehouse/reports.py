"""Reads for people: the sync summary's line per upload, a record's story ("where is my
student?"), and the change log an LEA's past roster is replayed from."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from .connection import Connection

SUMMARY = """
select u.lea_id, u.upload_id, u.status,
    (select count(*) from roster.students s where s.lea_id = u.lea_id) as students,
    (select count(*) from roster.staff s where s.lea_id = u.lea_id) as staff,
    (select count(*) from roster.classes c where c.lea_id = u.lea_id) as classes,
    (select count(*) from roster.enrollments e where e.lea_id = u.lea_id) as enrollments,
    (select count(*) from roster.changes c where c.upload_id = u.upload_id) as changes,
    (select count(distinct (r.file, r.line)) from quality.rejections r
        where r.upload_id = u.upload_id and r.level = 'row') as rejected_rows,
    (select count(*) from quality.rejections r where r.upload_id = u.upload_id
        and r.level = 'upload') as upload_faults
from ingest.uploads u where u.upload_id = ? or (? is null and u.run_id = ?)
"""


def upload_summaries(conn: Connection, upload_id: str | None, run_id: str) -> list[tuple]:
    """(lea_id, upload_id, status, students, staff, classes, enrollments, changes, rejected
    rows, upload faults) of the upload, or of the uploads the run recorded."""
    return conn.execute(SUMMARY, [upload_id, upload_id, run_id]).fetchall()


CHANGES = """
select c.applied_at, c.upload_id, c.entity, c.key, c.change, c.old_values, c.new_values,
    c.source_line
from roster.changes c
where c.lea_id = ? and {where}
order by c.applied_at, c.entity, c.key
"""


def record_story(
    conn: Connection, lea_id: str, kind: str, record_id: str, key_separator: str
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """A student's, class's or staff member's (`kind`) row now, the rows it links to now,
    every change to it, and the rejected rows naming it."""
    sep = key_separator
    if kind == "student":
        current = _q(
            conn,
            "select * from roster.students where lea_id = ? and student_id = ?",
            [lea_id, record_id],
        )
        related = {
            "classes": _q(
                conn,
                "select e.class_id, c.class_name, c.teacher_id from roster.enrollments e"
                " left join roster.classes c using (lea_id, class_id)"
                " where e.lea_id = ? and e.student_id = ? order by 1",
                [lea_id, record_id],
            )
        }
        where = (
            "((c.entity = 'students' and c.key = ?) or (c.entity = 'enrollments' and c.key like ?))"
        )
        params = [record_id, f"%{sep}{record_id}"]
        file_column = ("students.csv", "enrollments.csv", "student_id")
    elif kind == "class":
        current = _q(
            conn,
            "select * from roster.classes where lea_id = ? and class_id = ?",
            [lea_id, record_id],
        )
        related = {
            "students": _q(
                conn,
                "select student_id from roster.enrollments where lea_id = ? and class_id = ?"
                " order by 1",
                [lea_id, record_id],
            ),
            "co_teachers": _q(
                conn,
                "select staff_id from roster.co_teachers where lea_id = ? and class_id = ?",
                [lea_id, record_id],
            ),
        }
        where = (
            "((c.entity = 'classes' and c.key = ?) or"
            " (c.entity in ('enrollments', 'co_teachers') and c.key like ?))"
        )
        params = [record_id, f"{record_id}{sep}%"]
        file_column = ("classes.csv", "enrollments.csv", "class_id")
    elif kind == "staff":
        current = _q(
            conn,
            "select * from roster.staff where lea_id = ? and staff_id = ?",
            [lea_id, record_id],
        )
        related = {
            "account": _q(
                conn,
                "select username, status, created_at, deactivated_at from roster.accounts"
                " where lea_id = ? and staff_id = ?",
                [lea_id, record_id],
            ),
            "teaches": _q(
                conn,
                "select class_id, class_name, 'teacher' as role from roster.classes"
                " where lea_id = ? and teacher_id = ? union all"
                " select t.class_id, c.class_name, 'co-teacher' from roster.co_teachers t"
                " left join roster.classes c using (lea_id, class_id)"
                " where t.lea_id = ? and t.staff_id = ? order by 1",
                [lea_id, record_id, lea_id, record_id],
            ),
        }
        where = (
            "((c.entity = 'staff' and c.key = ?) or (c.entity = 'co_teachers' and c.key like ?))"
        )
        params = [record_id, f"%{sep}{record_id}"]
        file_column = ("staff.csv", "co_teachers.csv", "staff_id")
    else:
        raise ValueError(f"kind must be student, class or staff, not {kind!r}")
    history = _q(conn, CHANGES.format(where=where), [lea_id, *params])
    rejections = _q(
        conn,
        'select u.received_at, r.upload_id, r.file, r.line, r."column", r.rule, r.value'
        " from quality.rejections r join ingest.uploads u using (upload_id)"
        " where r.lea_id = ? and r.value = ? and r.file in (?, ?) order by 1",
        [lea_id, record_id, file_column[0], file_column[1]],
    )
    return current, related, history, rejections


def _q(conn: Connection, sql: str, params: list) -> pl.DataFrame:
    return conn.execute(sql, params).pl()


def first_change_at(conn: Connection, lea_id: str, upload_id: str) -> datetime | None:
    """When the upload's first change was applied (None when it changed nothing)."""
    return conn.execute(
        "select min(applied_at) from roster.changes where lea_id = ? and upload_id = ?",
        [lea_id, upload_id],
    ).fetchone()[0]


def changes_until(
    conn: Connection, lea_id: str, until: datetime, entities: tuple[str, ...]
) -> list[tuple[str, str, str, str | None]]:
    """(entity, key, change, new_values) of the LEA's changes to `entities` applied up to
    `until`, in applied order."""
    return conn.execute(
        "select entity, key, change, new_values from roster.changes"
        " where lea_id = ? and applied_at <= ? and entity in ?"
        " order by applied_at, entity, key",
        [lea_id, until, list(entities)],
    ).fetchall()


#: Every LEA's latest upload and its counts. The changes are counted in one pass over the
#: latest uploads' change records (three correlated counts read them three times: a statewide
#: first morning's board read ~20 M change rows thrice a refresh).
_LATEST_UPLOADS = """
with latest as (
    select *, row_number() over (partition by lea_id order by received_at desc) as n
    from ingest.uploads
),
counted as (
    select c.upload_id,
        count(*) filter (where c.change = 'add') as adds,
        count(*) filter (where c.change = 'update') as updates,
        count(*) filter (where c.change = 'drop') as drops
    from roster.changes c
    where c.upload_id in (select upload_id from latest where n = 1)
    group by c.upload_id
)
select u.lea_id, u.upload_id, u.received_at, u.status, u.held_by, u.reason, u.run_id,
    coalesce(u.decided_at, u.registered_at) as decided_at,
    coalesce(k.adds, 0) as adds,
    coalesce(k.updates, 0) as updates,
    coalesce(k.drops, 0) as drops,
    (select count(distinct (r.file, r.line)) from quality.rejections r
        where r.upload_id = u.upload_id and r.level = 'row') as rejected_rows,
    (select count(*) from quality.rejections r where r.upload_id = u.upload_id
        and r.level = 'upload') as upload_faults,
    (select count(*) from roster.students s where s.lea_id = u.lea_id) as students
from latest u left join counted k on k.upload_id = u.upload_id
where u.n = 1 order by u.lea_id
"""


def latest_uploads(conn: Connection) -> pl.DataFrame:
    """Every LEA's latest upload with its status, counts of changes and rejected rows, and
    the LEA's students now: the status board's rows (status_board.py)."""
    return conn.execute(_LATEST_UPLOADS).pl()
