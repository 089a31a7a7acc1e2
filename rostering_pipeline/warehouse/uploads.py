"""ingest.uploads and ingest.decisions: where each upload stands, and every decision on it.

The writers here are the ledger's (`rostering_pipeline/ledger.py` is the only module that
calls them); the readers serve the stages and sensors that need an upload's state.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from .connection import Connection

if TYPE_CHECKING:
    from ..decision import Decision
    from ..uploads import Upload

# -- written by the ledger -------------------------------------------------------------------


def insert_received(conn: Connection, upload: Upload, now: datetime, run_id: str) -> None:
    """The upload's row, status `received`; an upload already recorded is left as it is."""
    conn.execute(
        "insert into ingest.uploads (upload_id, lea_id, received_at, source_key, fingerprint,"
        " files, status, registered_at, run_id) values (?, ?, ?, ?, ?, ?, 'received', ?, ?)"
        " on conflict do nothing",
        [
            upload.upload_id,
            upload.lea_id,
            upload.received_at,
            upload.source_key,
            upload.fingerprint,
            upload.files_json(),
            now,
            run_id,
        ],
    )


def set_decision(
    conn: Connection,
    upload_id: str,
    decision: Decision,
    *,
    final_statuses: tuple[str, ...],
    replace_final: bool,
) -> str | None:
    """The decision on the upload's row unless it has a final status (one no operator made
    may be replaced when `replace_final`); the upload's LEA when the row changed."""
    updated = conn.execute(
        "update ingest.uploads set status = ?, reason = ?, held_by = ?, operator = ?,"
        " decided_at = ? where upload_id = ? and ((? and operator is null) or status not in ?)"
        " returning lea_id",
        [
            decision.status,
            decision.reason,
            decision.held_by,
            decision.operator,
            decision.decided_at,
            upload_id,
            replace_final,
            list(final_statuses),
        ],
    ).fetchall()
    return updated[0][0] if updated else None


def set_held(conn: Connection, upload_id: str, decision: Decision) -> str | None:
    """Held, on an upload received or held already; the upload's LEA when the row changed."""
    updated = conn.execute(
        "update ingest.uploads set status = 'held', held_by = ?, reason = ?, decided_at = ?"
        " where upload_id = ? and status in ('received', 'held') returning lea_id",
        [decision.held_by, decision.reason, decision.decided_at, upload_id],
    ).fetchall()
    return updated[0][0] if updated else None


def set_rejected_on_receipt(conn: Connection, upload_id: str, decision: Decision) -> str | None:
    """Rejected, on an upload still `received`; the upload's LEA when the row changed."""
    updated = conn.execute(
        "update ingest.uploads set status = 'rejected', reason = ?, decided_at = ?"
        " where upload_id = ? and status = 'received' returning lea_id",
        [decision.reason, decision.decided_at, upload_id],
    ).fetchall()
    return updated[0][0] if updated else None


def set_superseded(
    conn: Connection, lea_id: str, received_before: datetime, reason: str, now: datetime
) -> list[tuple[str, str]]:
    """The LEA's held uploads received before `received_before`, superseded: their
    (lea_id, upload_id)."""
    return conn.execute(
        "update ingest.uploads set status = 'superseded', decided_at = ?, reason = ?"
        " where lea_id = ? and status = 'held' and received_at < ? returning lea_id, upload_id",
        [now, reason, lea_id, received_before],
    ).fetchall()


def insert_decision(
    conn: Connection, upload_id: str, lea_id: str, decision: Decision, decided_by: str
) -> None:
    """One more line of the upload's history in ingest.decisions."""
    conn.execute(
        "insert into ingest.decisions (upload_id, lea_id, status, reason, held_by, operator,"
        " decided_by, changes, decided_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            upload_id,
            lea_id,
            decision.status,
            decision.reason,
            decision.held_by,
            decision.operator,
            decided_by,
            None if decision.changes is None else json.dumps(decision.changes),
            decision.decided_at,
        ],
    )


def set_failure_note(conn: Connection, upload_id: str, note: str) -> None:
    """Why the upload's run failed, on an upload still `received`."""
    conn.execute(
        "update ingest.uploads set reason = ? where upload_id = ? and status = 'received'",
        [note, upload_id],
    )


# -- read ------------------------------------------------------------------------------------


def status_of(conn: Connection, upload_id: str) -> tuple | None:
    """(status, reason, held_by, operator) of an upload, or None when it was never recorded."""
    return conn.execute(
        "select status, reason, held_by, operator from ingest.uploads where upload_id = ?",
        [upload_id],
    ).fetchone()


def decisions_of(conn: Connection, upload_id: str) -> list[tuple]:
    """The upload's decisions in order: (status, reason, operator, decided_by, decided_at)."""
    return conn.execute(
        "select status, reason, operator, decided_by, decided_at from ingest.decisions"
        " where upload_id = ? order by decided_at",
        [upload_id],
    ).fetchall()


def upload_record(
    conn: Connection,
    *,
    source_key: str | None = None,
    upload_id: str | None = None,
    latest_of_lea: str | None = None,
) -> tuple | None:
    """(upload_id, lea_id, received_at, source_key, files) of the newest upload with that
    source key, that id, or of that LEA."""
    if source_key is not None:
        where, arg = "source_key = ?", source_key
    elif upload_id is not None:
        where, arg = "upload_id = ?", upload_id
    else:
        where, arg = "lea_id = ?", latest_of_lea
    return conn.execute(
        "select upload_id, lea_id, received_at, source_key, files from ingest.uploads"
        f" where {where} order by received_at desc, registered_at desc limit 1",
        [arg],
    ).fetchone()


def upload_id_of_run(conn: Connection, run_id: str) -> str | None:
    """The upload a run recorded."""
    row = conn.execute("select upload_id from ingest.uploads where run_id = ?", [run_id]).fetchone()
    return row[0] if row else None


def last_applied(conn: Connection, lea_id: str) -> tuple[str, datetime] | None:
    """(upload_id, received_at) of the LEA's newest applied upload."""
    row = conn.execute(
        "select upload_id, received_at from ingest.uploads where lea_id = ? and status = 'applied'"
        " order by received_at desc, upload_id desc limit 1",
        [lea_id],
    ).fetchone()
    return (row[0], row[1]) if row else None


def fingerprint_of(conn: Connection, upload_id: str) -> str | None:
    row = conn.execute(
        "select fingerprint from ingest.uploads where upload_id = ?", [upload_id]
    ).fetchone()
    return row[0] if row else None


def upload_count(conn: Connection) -> int:
    return conn.execute("select count(*) from ingest.uploads").fetchone()[0]


def newest_blackout_held(conn: Connection) -> list[tuple[str, str, datetime]]:
    """Per LEA with uploads held by a blackout: (lea_id, newest held upload_id, its
    received_at)."""
    return conn.execute(
        "select lea_id, upload_id, received_at from (select lea_id, upload_id, received_at,"
        " row_number() over (partition by lea_id order by received_at desc, upload_id desc) as n"
        " from ingest.uploads where status = 'held' and held_by = 'blackout') as held"
        " where n = 1"
        " order by lea_id"
    ).fetchall()


def last_upload_dates(conn: Connection) -> pl.DataFrame:
    """`lea_id`, `last_upload` (a date): when each LEA's newest upload was received."""
    return conn.execute(
        "select lea_id, max(received_at)::date as last_upload from ingest.uploads group by lea_id"
        " order by lea_id"
    ).pl()


def decided_at(conn: Connection, lea_id: str, upload_id: str) -> tuple[datetime | None] | None:
    """(decided_at,) of the LEA's upload, or None when the LEA has no such upload."""
    return conn.execute(
        "select decided_at from ingest.uploads where lea_id = ? and upload_id = ?",
        [lea_id, upload_id],
    ).fetchone()


def latest_upload(conn: Connection, lea_id: str) -> tuple[str, str, str | None, str | None]:
    """(upload_id, status, reason, held_by) of the LEA's latest upload."""
    return conn.execute(
        "select upload_id, status, reason, held_by from ingest.uploads where lea_id = ?"
        " order by received_at desc limit 1",
        [lea_id],
    ).fetchone()
