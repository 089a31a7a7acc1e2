"""What an upload is: when an inbox holds a complete one, and how it is named and archived."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .sftp import RemoteFile

DEFAULT_QUIET_PERIOD_SECONDS = 120


def is_ready_marker(name: str) -> bool:
    """`ready`, `ready.txt`, `READY.done`: any file whose name before the dot is 'ready'."""
    return PurePosixPath(name).name.split(".", 1)[0].lower() == "ready"


def content_files(files: list[RemoteFile]) -> list[RemoteFile]:
    return [f for f in files if not is_ready_marker(f.name) and not f.name.endswith(".partial")]


def source_key(lea_id: str, files: list[RemoteFile]) -> str:
    """Names the inbox contents as listed (name, size, server mtime): the sensor's run key."""
    listing = sorted((f.name, f.size, f.mtime) for f in content_files(files))
    digest = hashlib.sha256(json.dumps([lea_id, listing]).encode()).hexdigest()
    return f"{lea_id}-{digest[:16]}"


@dataclass(frozen=True)
class ArchivedFile:
    name: str
    size: int
    mtime: int
    sha256: str
    archive_path: str


@dataclass(frozen=True)
class Upload:
    """One upload of one LEA, its files archived by content hash before anything reads them."""

    upload_id: str
    lea_id: str
    received_at: datetime
    source_key: str
    files: tuple[ArchivedFile, ...] = field(default_factory=tuple)

    @property
    def fingerprint(self) -> str:
        """Same files, same bytes: same fingerprint (a re-sent upload is a duplicate)."""
        listing = sorted((f.name.lower(), f.sha256) for f in self.files)
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()

    @property
    def upload_time(self) -> str:
        return self.received_at.strftime("%Y%m%dT%H%M%SZ")

    def files_json(self) -> str:
        return json.dumps(
            [
                {"name": f.name, "size": f.size, "mtime": f.mtime, "sha256": f.sha256}
                for f in self.files
            ]
        )

    def read_files(self) -> dict[str, bytes]:
        return {f.name: Path(f.archive_path).read_bytes() for f in self.files}


def make_upload(lea_id: str, key: str, files: list[ArchivedFile]) -> Upload:
    received = max((f.mtime for f in files), default=0)
    received_at = datetime.fromtimestamp(received, tz=UTC)
    stub = Upload("", lea_id, received_at, key, tuple(sorted(files, key=lambda f: f.name)))
    upload_id = f"{lea_id}-{stub.upload_time}-{stub.fingerprint[:8]}"
    return Upload(upload_id, lea_id, received_at, key, stub.files)


def archive_path(archive_root: Path, lea_id: str, sha256: str) -> Path:
    return archive_root / lea_id / sha256[:2] / sha256


def inbox(lea_id: str) -> str:
    return posixpath.join("/", lea_id, "inbox")


def outbox(lea_id: str) -> str:
    return posixpath.join("/", lea_id, "outbox")


def processed(lea_id: str, upload_id: str) -> str:
    return posixpath.join("/", lea_id, "processed", upload_id)


@dataclass(frozen=True)
class CompleteUpload:
    lea_id: str
    source_key: str
    files: tuple[RemoteFile, ...]


def scan_inboxes(
    inboxes: dict[str, list[RemoteFile]],
    pending: dict[str, dict],
    now: float,
    quiet_period_seconds: float,
) -> tuple[list[CompleteUpload], dict[str, dict]]:
    """Which inboxes hold a complete upload, and the state to carry to the next look.

    Complete means a `ready` marker is present, or the listing (names, sizes, server mtimes)
    has not changed for the quiet period. Time is measured between our own looks, so a
    server whose clock is off cannot make a half-written file look finished.
    """
    complete: list[CompleteUpload] = []
    still_pending: dict[str, dict] = {}
    for lea_id, listing in sorted(inboxes.items()):
        files = content_files([f for f in listing if f.kind == "file"])
        if not files:
            continue
        key = source_key(lea_id, files)
        ready = any(is_ready_marker(f.name) for f in listing if f.kind == "file")
        seen = pending.get(lea_id)
        since = seen["since"] if seen and seen.get("key") == key else now
        if ready or now - since >= quiet_period_seconds:
            complete.append(CompleteUpload(lea_id, key, tuple(files)))
        else:
            still_pending[lea_id] = {"key": key, "since": since}
    return complete, still_pending
