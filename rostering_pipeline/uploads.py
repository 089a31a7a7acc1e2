"""What an upload is: when an inbox holds a complete one, and how it is named and archived."""

from __future__ import annotations

import hashlib
import json
import posixpath
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .sftp import RemoteFile

#: Longest file name a POSIX file system (and so an SFTP server) stores.
MAX_NAME_BYTES = 255


def is_ready_marker(name: str) -> bool:
    """`ready`, `ready.txt`, `READY.done`: any file whose name before the dot is 'ready'."""
    return PurePosixPath(name).name.split(".", 1)[0].lower() == "ready"


def content_files(files: list[RemoteFile]) -> list[RemoteFile]:
    return [f for f in files if not is_ready_marker(f.name) and not f.name.endswith(".partial")]


def source_key(lea_id: str, files: list[RemoteFile]) -> str:
    """Names the inbox contents as listed (name, size, server mtime): the sensor's run key
    (with `-retryN` on a retry) and its run_tags.UPLOAD_KEY_TAG."""
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
class RefusedFile:
    """An inbox entry the pipeline will not read: why, and what the LEA should do about it.

    Hostile or mistaken entries (a link, a folder, a name with a line break, a file over the
    size limit) are refused before anything downloads them, and the upload they came with is
    rejected as a whole, so the LEA hears about them instead of a run crashing.
    """

    name: str
    size: int
    mtime: int
    kind: str
    rule: str
    fix: str

    @property
    def shown_name(self) -> str:
        return visible_name(self.name)


@dataclass(frozen=True)
class Upload:
    """One upload of one LEA, its files archived by content hash before anything reads them."""

    upload_id: str
    lea_id: str
    received_at: datetime
    source_key: str
    files: tuple[ArchivedFile, ...] = field(default_factory=tuple)
    refused: tuple[RefusedFile, ...] = field(default_factory=tuple)

    @property
    def fingerprint(self) -> str:
        """Same files, same bytes: same fingerprint (a re-sent upload is a duplicate).

        Refused entries count too, so fixing an inbox (removing a link, say) makes a new
        upload rather than a repeat of the rejected one."""
        listing: list = sorted((f.name.lower(), f.sha256) for f in self.files)
        if self.refused:
            listing += sorted([f.name, f.kind, f.size, f.mtime, "refused"] for f in self.refused)
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
            + [
                {
                    "name": f.name,
                    "size": f.size,
                    "mtime": f.mtime,
                    "sha256": None,
                    "kind": f.kind,
                    "refused": f.rule,
                    "fix": f.fix,
                }
                for f in self.refused
            ]
        )

    def read_files(self) -> dict[str, bytes]:
        return {f.name: Path(f.archive_path).read_bytes() for f in self.files}


def make_upload(
    lea_id: str,
    key: str,
    files: list[ArchivedFile],
    refused: list[RefusedFile] | None = None,
    *,
    received_at: datetime,
) -> Upload:
    """`received_at` is when the pipeline saw the upload complete (DESIGN invariant 3): it
    orders the LEA's uploads, dates the rules and names the report, so it never comes from
    the LEA's file times, which only tell that something changed."""
    refused = sorted(refused or [], key=lambda f: f.name)
    received_at = received_at.astimezone(UTC)
    stub = Upload(
        "", lea_id, received_at, key, tuple(sorted(files, key=lambda f: f.name)), tuple(refused)
    )
    upload_id = f"{lea_id}-{stub.upload_time}-{stub.fingerprint[:8]}"
    return Upload(upload_id, lea_id, received_at, key, stub.files, stub.refused)


def visible_name(name: str) -> str:
    """A file name as it can be shown in a report or a log line: control characters escaped."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name
    )


def unsafe_name(file: RemoteFile) -> str | None:
    """Why a name cannot be used to address the file safely, or None when it can.

    The pipeline builds server paths from names (to download and to move to processed/), so a
    name must be one path component: no separators, no `.`/`..`, nothing invisible."""
    name = file.name
    if not file.utf8_name:
        return "file name is not valid UTF-8"
    if name in ("", ".", ".."):
        return "file name is empty, '.' or '..'"
    if "/" in name or "\\" in name:
        return "file name contains a path separator (/ or \\)"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        return "file name contains a line break or another invisible control character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"file name is longer than {MAX_NAME_BYTES} bytes"
    return None


RENAME_FIX = (
    "Rename the file to the name the upload format gives it (students.csv, staff.csv, …), "
    "using only letters, digits, spaces, '.', '-' and '_', and upload again."
)


def too_large(f: RemoteFile, max_file_bytes: int) -> RefusedFile:
    return RefusedFile(
        f.name,
        f.size,
        f.mtime,
        f.kind,
        f"file is larger than the limit of {max_file_bytes:,} bytes",
        "Check that this is the right export (an upload's files are usually far smaller); if "
        "your files really are this large, ask the operators to raise the limit.",
    )


def screen_entries(
    entries: list[RemoteFile], max_file_bytes: int
) -> tuple[list[RemoteFile], list[RefusedFile]]:
    """Split inbox entries into files the pipeline may download and entries it refuses.

    Only regular files with safe names within the size limit are ever opened; links are never
    followed (one could point at another LEA's folder), folders are never entered."""
    accepted: list[RemoteFile] = []
    refused: list[RefusedFile] = []

    def refuse(f: RemoteFile, rule: str, fix: str) -> None:
        refused.append(RefusedFile(f.name, f.size, f.mtime, f.kind, rule, fix))

    for f in entries:
        bad_name = unsafe_name(f)
        if bad_name:
            refuse(f, bad_name, RENAME_FIX)
        elif f.kind == "dir":
            refuse(
                f,
                "a folder where a file should be",
                "Put the upload's files directly in inbox/, not in a folder, and remove the "
                "folder from inbox/.",
            )
        elif f.kind == "link":
            refuse(
                f,
                "a symbolic link, not a file",
                "Upload the file itself rather than a link to it, and remove the link.",
            )
        elif f.kind != "file":
            refuse(
                f,
                "not a regular file",
                "Upload only CSV files (or a .zip of them) to inbox/ and remove this entry.",
            )
        elif f.size > max_file_bytes:
            refused.append(too_large(f, max_file_bytes))
        else:
            accepted.append(f)
    return accepted, refused


def archive_path(archive_root: Path, lea_id: str, sha256: str) -> Path:
    return archive_root / lea_id / sha256[:2] / sha256


def inbox(lea_id: str) -> str:
    return posixpath.join("/", lea_id, "inbox")


def outbox(lea_id: str) -> str:
    return posixpath.join("/", lea_id, "outbox")


def processed(lea_id: str, upload_id: str) -> str:
    return posixpath.join("/", lea_id, "processed", upload_id)


def lea_folders(lea_id: str) -> list[str]:
    """The folders of an LEA the pipeline reads or writes (the LEA's own folder above them)."""
    return [inbox(lea_id), posixpath.join("/", lea_id, "processed"), outbox(lea_id)]


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
