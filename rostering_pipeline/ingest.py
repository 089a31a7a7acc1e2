"""Receiving an upload: download, archive by content hash, record, and clear the inbox."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb

from .sftp import RemoteFile, SftpResource
from .uploads import (
    ArchivedFile,
    Upload,
    archive_path,
    content_files,
    inbox,
    is_ready_marker,
    make_upload,
    processed,
)


class UploadNotReady(Exception):
    """The inbox no longer holds what the sensor saw: the LEA is still writing to it."""


def inbox_files(sftp: SftpResource, lea_id: str) -> list[RemoteFile]:
    return content_files([f for f in sftp.list_dir(inbox(lea_id)) if f.kind == "file"])


def download_upload(
    sftp: SftpResource,
    archive_root: Path,
    lea_id: str,
    key: str,
    files: list[RemoteFile],
) -> Upload:
    """Archive every file unchanged, by sha256, before anything parses it.

    A file that changed since it was listed fails the step: the upload is picked up again once
    it settles, and nothing half-written is ever read.
    """
    current = {(f.name, f.size, f.mtime) for f in inbox_files(sftp, lea_id)}
    changed = [f.name for f in files if (f.name, f.size, f.mtime) not in current]
    if changed:
        raise UploadNotReady(
            f"LEA {lea_id}: {', '.join(changed)} changed or disappeared in inbox/ after the "
            "upload was seen complete. Nothing was applied; the sensor will pick the upload "
            "up again once its files stop changing."
        )
    return make_upload(lea_id, key, [_archive(sftp, archive_root, lea_id, f) for f in files])


def _archive(
    sftp: SftpResource, archive_root: Path, lea_id: str, remote: RemoteFile
) -> ArchivedFile:
    staging = archive_root / ".incoming"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=staging)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        after = sftp.download(f"{inbox(lea_id)}/{remote.name}", tmp)
        size = tmp.stat().st_size
        if (after.size, after.mtime, size) != (remote.size, remote.mtime, remote.size):
            raise UploadNotReady(
                f"LEA {lea_id}: {remote.name} changed while it was being downloaded. Nothing "
                "was applied; the upload will be picked up again once the file stops changing."
            )
        digest = _sha256(tmp)
        target = archive_path(archive_root, lea_id, digest)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.chmod(0o400)
        os.replace(tmp, target)
        return ArchivedFile(remote.name, remote.size, remote.mtime, digest, str(target))
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def record_upload(
    conn: duckdb.DuckDBPyConnection, upload: Upload, now: datetime, run_id: str
) -> None:
    """One row per upload; recording the same upload again changes nothing."""
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


def find_upload(
    conn: duckdb.DuckDBPyConnection,
    archive_root: Path,
    *,
    source_key: str | None = None,
    upload_id: str | None = None,
    latest_of_lea: str | None = None,
) -> Upload | None:
    """An upload already received, rebuilt from ingest.uploads and the archive."""
    if source_key is not None:
        where, arg = "source_key = ?", source_key
    elif upload_id is not None:
        where, arg = "upload_id = ?", upload_id
    else:
        where, arg = "lea_id = ?", latest_of_lea
    row = conn.execute(
        "select upload_id, lea_id, received_at, source_key, files from ingest.uploads"
        f" where {where} order by received_at desc, registered_at desc limit 1",
        [arg],
    ).fetchone()
    if row is None:
        return None
    files = tuple(
        ArchivedFile(
            f["name"],
            f["size"],
            f["mtime"],
            f["sha256"],
            str(archive_path(archive_root, row[1], f["sha256"])),
        )
        for f in json.loads(row[4])
    )
    return Upload(row[0], row[1], row[2], row[3], files)


def clear_inbox(sftp: SftpResource, upload: Upload) -> None:
    """Move the upload's files to processed/<upload_id>/: an empty inbox tells the LEA."""
    markers = [f.name for f in sftp.list_dir(inbox(upload.lea_id)) if is_ready_marker(f.name)]
    sftp.move_files(
        [f.name for f in upload.files] + markers,
        inbox(upload.lea_id),
        processed(upload.lea_id, upload.upload_id),
    )
