"""Answers to "where is my student?": a record's current state and every change to it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import polars as pl

from ..upload_spec.files import BY_ENTITY
from .diff import KEY_SEPARATOR

CHANGES = """
select c.applied_at, c.upload_id, c.entity, c.key, c.change, c.old_values, c.new_values,
    c.source_line
from roster.changes c
where c.lea_id = ? and {where}
order by c.applied_at, c.entity, c.key
"""


@dataclass
class Explanation:
    """What the roster says now, what it links to, and how it got there."""

    title: str
    current: pl.DataFrame
    related: dict[str, pl.DataFrame]
    history: pl.DataFrame
    rejections: pl.DataFrame


def explain(conn: duckdb.DuckDBPyConnection, lea_id: str, kind: str, record_id: str) -> Explanation:
    """`kind` is student, class or staff; `record_id` the LEA's own ID."""
    sep = KEY_SEPARATOR
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
    return Explanation(f"{kind} {record_id} of LEA {lea_id}", current, related, history, rejections)


def _q(conn: duckdb.DuckDBPyConnection, sql: str, params: list) -> pl.DataFrame:
    return conn.execute(sql, params).pl()


def render(explanation: Explanation) -> str:
    """Plain text for a terminal: the ticket's answer first, then the history."""
    parts = [f"== {explanation.title}"]
    if explanation.current.is_empty():
        parts.append("Not in the applied roster now.")
    else:
        row = explanation.current.drop("lea_id").row(0, named=True)
        parts.append("  " + ", ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    for name, frame in explanation.related.items():
        parts.append(f"-- {name} now ({frame.height})")
        parts += ["  " + "  ".join(str(v) for v in r) for r in frame.rows()]
    parts.append(f"-- changes ({explanation.history.height}), oldest first")
    for r in explanation.history.iter_rows(named=True):
        file = BY_ENTITY[r["entity"]].file_name
        where = f"{file} line {r['source_line']}" if r["source_line"] else file
        parts.append(
            f"  {r['applied_at']:%Y-%m-%d %H:%M}  {r['change']:<6}  {r['entity']:<11}  "
            f"{r['key']:<24}  {_what(r)}  ({where}; upload {r['upload_id']})"
        )
    parts.append(f"-- rejected rows naming it ({explanation.rejections.height})")
    for r in explanation.rejections.iter_rows(named=True):
        parts.append(
            f"  {r['received_at']:%Y-%m-%d %H:%M}  {r['file']} line {r['line']}, column "
            f"{r['column']}: {r['rule']}  (upload {r['upload_id']})"
        )
    return "\n".join(parts)


def _what(change: dict) -> str:
    if change["change"] != "update":
        return ""
    old, new = json.loads(change["old_values"] or "{}"), json.loads(change["new_values"] or "{}")
    return ", ".join(f"{c}: {old.get(c)} -> {new.get(c)}" for c in new)
