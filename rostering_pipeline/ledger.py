"""The upload ledger: each upload's lifecycle, in `ingest.uploads` and in a manifest beside
its archived files.

Every stage records what happened to an upload here, and nowhere else: received, held,
decided (applied, rejected, duplicate, superseded), or a failed run's note. The warehouse row
says where an upload stands now; the manifest (`<archive>/<lea_id>/manifests/<upload_id>.json`)
keeps the upload's files and every decision in order (who or what decided, when, why, and
the LEA's settings then), so the archive alone rebuilds the warehouse (DESIGN invariant 8;
`rebuild.py`). A manifest is written after the transaction that made the decision commits:
it never states a decision the warehouse rolled back.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from .uploads import ArchivedFile, RefusedFile, Upload, archive_path

FINAL_STATUSES = ("applied", "rejected", "duplicate", "superseded")
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Decision:
    """One decision on an upload, as the manifest keeps it."""

    status: str
    reason: str | None
    decided_at: datetime
    held_by: str | None = None
    #: `release` or `reject` when an operator decided on a held upload.
    operator: str | None = None
    #: The LEA's settings the decision was made under (LeaSettings as JSON).
    settings: dict = field(default_factory=dict)
    #: `run`: the upload's own run decided; `newer upload <id>`: decided by another's apply.
    by: str = "run"
    #: Adds, updates and drops per entity the decision applied (none when nothing applied).
    changes: dict | None = None

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "decided_at": self.decided_at.isoformat(),
            "held_by": self.held_by,
            "operator": self.operator,
            "settings": self.settings,
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: dict) -> Decision:
        return cls(
            data["status"],
            data.get("reason"),
            datetime.fromisoformat(data["decided_at"]),
            data.get("held_by"),
            data.get("operator"),
            data.get("settings") or {},
            data.get("by", "run"),
        )


# -- the warehouse row ---------------------------------------------------------------------


def record_received(
    conn: duckdb.DuckDBPyConnection,
    archive_root: Path,
    upload: Upload,
    now: datetime,
    run_id: str,
) -> None:
    """One row and one manifest per upload; recording the same upload again changes nothing."""
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
    if not manifest_path(archive_root, upload.lea_id, upload.upload_id).exists():
        _write_manifest(archive_root, upload, [])


def status_of(conn: duckdb.DuckDBPyConnection, upload_id: str) -> tuple | None:
    """(status, reason, held_by) of an upload, or None when it was never recorded."""
    return conn.execute(
        "select status, reason, held_by from ingest.uploads where upload_id = ?", [upload_id]
    ).fetchone()


def decide(
    conn: duckdb.DuckDBPyConnection, upload_id: str, decision: Decision, *, again: bool = False
) -> bool:
    """The upload's decision; True when it was recorded. A final decision stands (an
    operator's always): only a replay decided `again` (a backfill after a rule change) may
    replace an applied or rejected one that no operator made. Every decision recorded joins
    the upload's history in ingest.decisions."""
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
            again and decision.status in ("applied", "rejected"),
            list(FINAL_STATUSES),
        ],
    ).fetchall()
    _history(conn, upload_id, updated, decision)
    return bool(updated)


def hold(conn: duckdb.DuckDBPyConnection, upload_id: str, decision: Decision) -> bool:
    """Held by the safeguard: waits for an operator (never over a final decision)."""
    updated = conn.execute(
        "update ingest.uploads set status = 'held', held_by = ?, reason = ?, decided_at = ?"
        " where upload_id = ? and status in ('received', 'held') returning lea_id",
        [decision.held_by, decision.reason, decision.decided_at, upload_id],
    ).fetchall()
    _history(conn, upload_id, updated, decision)
    return bool(updated)


def reject_received(conn: duckdb.DuckDBPyConnection, upload_id: str, decision: Decision) -> bool:
    """Rejected before anything was read (refused inbox entries)."""
    updated = conn.execute(
        "update ingest.uploads set status = 'rejected', reason = ?, decided_at = ?"
        " where upload_id = ? and status = 'received' returning lea_id",
        [decision.reason, decision.decided_at, upload_id],
    ).fetchall()
    _history(conn, upload_id, updated, decision)
    return bool(updated)


def supersede_held(
    conn: duckdb.DuckDBPyConnection, upload: Upload, now: datetime
) -> list[tuple[str, str]]:
    """Held uploads of the LEA received before `upload`, which was just applied, are
    superseded by it; returns their (lea_id, upload_id)."""
    reason = f"held, then replaced by the newer upload {upload.upload_id}"
    superseded = conn.execute(
        "update ingest.uploads set status = 'superseded', decided_at = ?, reason = ?"
        " where lea_id = ? and status = 'held' and received_at < ? returning lea_id, upload_id",
        [now, reason, upload.lea_id, upload.received_at],
    ).fetchall()
    decision = Decision("superseded", reason, now, by=f"newer upload {upload.upload_id}")
    for lea_id, upload_id in superseded:
        _history(conn, upload_id, [(lea_id,)], decision)
    return superseded


def decisions_of(conn: duckdb.DuckDBPyConnection, upload_id: str) -> list[tuple]:
    """The upload's decisions in order: (status, reason, operator, decided_by, decided_at)."""
    return conn.execute(
        "select status, reason, operator, decided_by, decided_at from ingest.decisions"
        " where upload_id = ? order by decided_at",
        [upload_id],
    ).fetchall()


def _history(
    conn: duckdb.DuckDBPyConnection, upload_id: str, updated: list, decision: Decision
) -> None:
    if not updated:
        return
    conn.execute(
        "insert into ingest.decisions (upload_id, lea_id, status, reason, held_by, operator,"
        " decided_by, changes, decided_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            upload_id,
            updated[0][0],
            decision.status,
            decision.reason,
            decision.held_by,
            decision.operator,
            decision.by if decision.operator is None else f"operator ({decision.operator})",
            None if decision.changes is None else json.dumps(decision.changes),
            decision.decided_at,
        ],
    )


def note_failure(conn: duckdb.DuckDBPyConnection, upload_id: str, note: str) -> None:
    """Why the upload's run failed, on an upload still waiting to be decided."""
    conn.execute(
        "update ingest.uploads set reason = ? where upload_id = ? and status = 'received'",
        [note[:2000], upload_id],
    )


# -- the manifest --------------------------------------------------------------------------


def manifest_path(archive_root: Path, lea_id: str, upload_id: str) -> Path:
    return archive_root / lea_id / "manifests" / f"{upload_id}.json"


def append_decision(archive_root: Path, upload: Upload, decision: Decision) -> None:
    """Add a decision to the upload's manifest (written after its transaction committed)."""
    path = manifest_path(archive_root, upload.lea_id, upload.upload_id)
    decisions = json.loads(path.read_text())["decisions"] if path.exists() else []
    _write_manifest(archive_root, upload, [*decisions, decision.as_json()])


def append_superseded(
    archive_root: Path, superseded: list[tuple[str, str]], decision: Decision
) -> None:
    for lea_id, upload_id in superseded:
        path = manifest_path(archive_root, lea_id, upload_id)
        if path.exists():
            append_decision(archive_root, read_manifest(archive_root, path)[0], decision)


def read_manifest(archive_root: Path, path: Path) -> tuple[Upload, list[Decision]]:
    data = json.loads(path.read_text())
    upload = upload_from_record(
        archive_root,
        data["upload_id"],
        data["lea_id"],
        datetime.fromisoformat(data["received_at"]),
        data["source_key"],
        json.dumps(data["files"]),
    )
    return upload, [Decision.from_json(d) for d in data["decisions"]]


def manifests(archive_root: Path) -> list[Path]:
    return sorted(archive_root.glob("*/manifests/*.json"))


def upload_from_record(
    archive_root: Path,
    upload_id: str,
    lea_id: str,
    received_at: datetime,
    source_key: str,
    files_json: str,
) -> Upload:
    """An upload as ingest.uploads (or its manifest) lists it, its files in the archive."""
    entries = json.loads(files_json)
    files = tuple(
        ArchivedFile(
            f["name"],
            f["size"],
            f["mtime"],
            f["sha256"],
            str(archive_path(archive_root, lea_id, f["sha256"])),
        )
        for f in entries
        if not f.get("refused")
    )
    refused = tuple(
        RefusedFile(f["name"], f["size"], f["mtime"], f["kind"], f["refused"], f["fix"])
        for f in entries
        if f.get("refused")
    )
    return Upload(upload_id, lea_id, received_at, source_key, files, refused)


def _write_manifest(archive_root: Path, upload: Upload, decisions: list[dict]) -> None:
    path = manifest_path(archive_root, upload.lea_id, upload.upload_id)
    folder = path.parent
    for part in (archive_root, archive_root / upload.lea_id, folder):
        part.mkdir(mode=0o700, exist_ok=True)
    document = {
        "format": MANIFEST_FORMAT,
        "lea_id": upload.lea_id,
        "upload_id": upload.upload_id,
        "received_at": upload.received_at.isoformat(),
        "source_key": upload.source_key,
        "fingerprint": upload.fingerprint,
        "files": json.loads(upload.files_json()),
        "decisions": decisions,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
