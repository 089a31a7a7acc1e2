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
from datetime import datetime
from pathlib import Path

from .decision import Decision
from .uploads import ArchivedFile, RefusedFile, Upload, archive_path
from .warehouse import Connection
from .warehouse import uploads as rows

FINAL_STATUSES = ("applied", "rejected", "duplicate", "superseded")
MANIFEST_FORMAT = 1


# -- the warehouse row ---------------------------------------------------------------------


def record_received(
    conn: Connection,
    archive_root: Path,
    upload: Upload,
    now: datetime,
    run_id: str,
) -> None:
    """One row and one manifest per upload; recording the same upload again changes nothing."""
    rows.insert_received(conn, upload, now, run_id)
    if not manifest_path(archive_root, upload.lea_id, upload.upload_id).exists():
        _write_manifest(archive_root, upload, [])


def status_of(conn: Connection, upload_id: str) -> tuple | None:
    """(status, reason, held_by) of an upload, or None when it was never recorded."""
    status = rows.status_of(conn, upload_id)
    return None if status is None else status[:3]


def decide(conn: Connection, upload_id: str, decision: Decision, *, again: bool = False) -> bool:
    """The upload's decision; True when it was recorded. A final decision stands (an
    operator's always): only a replay decided `again` (a backfill after a rule change) may
    replace an applied or rejected one that no operator made. Every decision recorded joins
    the upload's history in ingest.decisions."""
    lea_id = rows.set_decision(
        conn,
        upload_id,
        decision,
        final_statuses=FINAL_STATUSES,
        replace_final=again and decision.status in ("applied", "rejected"),
    )
    _history(conn, upload_id, lea_id, decision)
    return lea_id is not None


def hold(conn: Connection, upload_id: str, decision: Decision) -> bool:
    """Held by the safeguard: waits for an operator (never over a final decision)."""
    lea_id = rows.set_held(conn, upload_id, decision)
    _history(conn, upload_id, lea_id, decision)
    return lea_id is not None


def reject_received(conn: Connection, upload_id: str, decision: Decision) -> bool:
    """Rejected before anything was read (refused inbox entries)."""
    lea_id = rows.set_rejected_on_receipt(conn, upload_id, decision)
    _history(conn, upload_id, lea_id, decision)
    return lea_id is not None


def supersede_held(conn: Connection, upload: Upload, now: datetime) -> list[tuple[str, str]]:
    """Held uploads of the LEA received before `upload`, which was just applied, are
    superseded by it; returns their (lea_id, upload_id)."""
    reason = f"held, then replaced by the newer upload {upload.upload_id}"
    superseded = rows.set_superseded(conn, upload.lea_id, upload.received_at, reason, now)
    decision = Decision("superseded", reason, now, by=f"newer upload {upload.upload_id}")
    for lea_id, upload_id in superseded:
        _history(conn, upload_id, lea_id, decision)
    return superseded


def decisions_of(conn: Connection, upload_id: str) -> list[tuple]:
    """The upload's decisions in order: (status, reason, operator, decided_by, decided_at)."""
    return rows.decisions_of(conn, upload_id)


def _history(conn: Connection, upload_id: str, lea_id: str | None, decision: Decision) -> None:
    if lea_id is None:
        return
    decided_by = decision.by if decision.operator is None else f"operator ({decision.operator})"
    rows.insert_decision(conn, upload_id, lea_id, decision, decided_by)


def note_failure(conn: Connection, upload_id: str, note: str) -> None:
    """Why the upload's run failed, on an upload still waiting to be decided."""
    rows.set_failure_note(conn, upload_id, note[:2000])


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
