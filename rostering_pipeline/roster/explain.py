"""Answers to "where is my student?": a record's current state and every change to it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from ..upload_spec.files import BY_ENTITY
from ..warehouse import Connection
from ..warehouse.reports import record_story
from .diff import KEY_SEPARATOR


@dataclass
class Explanation:
    """What the roster says now, what it links to, and how it got there."""

    title: str
    current: pl.DataFrame
    related: dict[str, pl.DataFrame]
    history: pl.DataFrame
    rejections: pl.DataFrame


def explain(conn: Connection, lea_id: str, kind: str, record_id: str) -> Explanation:
    """`kind` is student, class or staff; `record_id` the LEA's own ID."""
    current, related, history, rejections = record_story(
        conn, lea_id, kind, record_id, KEY_SEPARATOR
    )
    return Explanation(f"{kind} {record_id} of LEA {lea_id}", current, related, history, rejections)


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
