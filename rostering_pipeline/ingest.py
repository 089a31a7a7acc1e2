"""Receiving an upload: download, archive by content hash, record, and clear the inbox."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from . import ledger
from .decision import Decision, UploadDecision
from .outbox import deliver_report
from .quality import record_rejections
from .sftp import FileTooLarge, LocalWriteFailed, RemoteFile, SftpResource
from .upload_spec.rejections import Rejection, rejection_frame
from .uploads import (
    ArchivedFile,
    Upload,
    archive_path,
    content_files,
    inbox,
    is_ready_marker,
    make_upload,
    processed,
    screen_entries,
    too_large,
    unsafe_name,
    visible_name,
)
from .warehouse import Connection, WarehouseResource
from .warehouse import uploads as upload_rows


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
    *,
    received_at: datetime,
    max_file_bytes: int | None = None,
) -> Upload:
    """Archive every acceptable file unchanged, by sha256, before anything parses it.

    A file that changed since it was listed raises UploadNotReady: the upload is picked up
    again once it settles, and nothing half-written is ever read. Entries the pipeline will not read
    (links, folders, unsafe names, files over `max_file_bytes`) are never opened; they come
    back as the upload's `refused` entries.
    """
    listing = sftp.list_dir(inbox(lea_id))
    current = {(f.name, f.size, f.mtime) for f in content_files(listing) if f.kind == "file"}
    changed = [f.name for f in files if (f.name, f.size, f.mtime) not in current]
    if changed:
        raise UploadNotReady(
            f"LEA {lea_id}: {', '.join(map(visible_name, changed))} changed or disappeared in "
            "inbox/ after the upload was seen complete. Nothing was read; the sensor picks the "
            "upload up again once its files stop changing."
        )
    wanted = {(f.name, f.size, f.mtime) for f in files}
    entries = [
        f for f in content_files(listing) if (f.name, f.size, f.mtime) in wanted or f.kind != "file"
    ]
    accepted, refused = screen_entries(entries, max_file_bytes or 1 << 62)
    archived = []
    for remote in accepted:
        try:
            archived.append(_archive(sftp, archive_root, lea_id, remote, max_file_bytes))
        except FileTooLarge:
            refused.append(too_large(remote, max_file_bytes or 0))
    return make_upload(lea_id, key, archived, refused, received_at=received_at)


def refusal_rejections(upload: Upload) -> list[Rejection]:
    """The upload's refused entries as rejections that stop the whole upload."""
    return [
        Rejection(f.shown_name, None, None, f.rule, None, f.fix, "upload") for f in upload.refused
    ]


def reject_refused_upload(
    sftp: SftpResource,
    warehouse: WarehouseResource,
    archive_root: Path,
    upload: Upload,
    now: datetime,
) -> None:
    """Reject an upload whose inbox held entries the pipeline refuses, and tell the LEA.

    Recorded like any rejected upload (status, quality.rejections, a sync report in outbox/),
    so nothing downstream has to know about it; doing it again changes nothing."""
    rejections = rejection_frame(refusal_rejections(upload))
    reason = "the inbox held entries the pipeline does not read: " + "; ".join(
        f"{f.shown_name} ({f.rule})" for f in upload.refused
    )
    decision = Decision("rejected", reason[:2000], now)
    with warehouse.connect() as conn:
        record_rejections(conn, upload, rejections, now)
        ledger.reject_received(conn, upload.upload_id, decision)
    ledger.append_decision(archive_root, upload, decision)
    plan = UploadDecision(upload.upload_id, upload.lea_id, "rejected", reason, None)
    deliver_report(sftp, upload, plan, rejections)


class ArchiveUnwritable(Exception):
    """The archive's disk refused a write (full, read-only, no permission): the operators'
    to fix, not the LEA's or the SFTP server's. Nothing of the upload is lost: it was not
    recorded and its files stay in the inbox."""


def _archive(
    sftp: SftpResource,
    archive_root: Path,
    lea_id: str,
    remote: RemoteFile,
    max_file_bytes: int | None = None,
) -> ArchivedFile:
    with _writing_archive(archive_root, lea_id, remote.name):
        staging = private_dir(archive_root, ".incoming")
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        os.close(fd)
    tmp = Path(tmp_name)
    changed = UploadNotReady(
        f"LEA {lea_id}: {visible_name(remote.name)} changed or disappeared in inbox/ while it "
        "was being downloaded. Nothing was read; the sensor picks the upload up again once "
        "its files stop changing."
    )
    try:
        try:
            after = sftp.download(f"{inbox(lea_id)}/{remote.name}", tmp, max_file_bytes)
        except FileNotFoundError:  # the LEA deleted (or renamed) it after the listing
            raise changed from None
        except LocalWriteFailed as failed:
            raise _archive_fault(
                archive_root, lea_id, remote.name, failed.error, failed.path
            ) from None
        with _writing_archive(archive_root, lea_id, remote.name):
            size = tmp.stat().st_size
            if (after.size, after.mtime, after.kind, size) != (
                remote.size,
                remote.mtime,
                "file",
                remote.size,
            ):
                raise changed
            digest = _sha256(tmp)
            target = archive_path(archive_root, lea_id, digest)
            private_dir(archive_root, *target.parent.relative_to(archive_root).parts)
            tmp.chmod(0o400)
            os.replace(tmp, target)
        return ArchivedFile(remote.name, remote.size, remote.mtime, digest, str(target))
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _writing_archive(archive_root: Path, lea_id: str, name: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise _archive_fault(archive_root, lea_id, name, error) from None


def _archive_fault(
    archive_root: Path, lea_id: str, name: str, error: OSError, path: Path | None = None
) -> ArchiveUnwritable:
    """What an operator needs: which archive, what the disk said, its free space, the fix."""
    try:
        free = f"{shutil.disk_usage(archive_root).free:,} bytes free on that disk"
    except OSError:
        free = "its free space could not be read"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = (
            "Free space on the archive's disk (or raise the pipeline user's quota), or point "
            "ROSTERING_ARCHIVE at a disk with room"
        )
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = (
            "Give the pipeline's user write access to the archive (on a disk that is not "
            "read-only), or point ROSTERING_ARCHIVE at a folder it can write"
        )
    else:
        fix = "Check the archive's disk (the system log says more)"
    written = path or error.filename
    where = f", writing {written}" if written else ""
    return ArchiveUnwritable(
        f"LEA {lea_id}: could not write {visible_name(name)} to the archive at {archive_root}"
        f"{where}: {error.strerror or error}; {free}. {fix}. Nothing was lost: the upload "
        "was not recorded and stays in the LEA's inbox; it is taken again when the run is "
        "retried or re-executed."
    )


def private_dir(root: Path, *parts: str) -> Path:
    """`root/parts…`, each folder the pipeline creates readable by its own user only.

    The archive holds every student's record as the LEA sent it, and `mkdir(parents=True)`
    would give every folder but the last the umask's mode (often world-readable)."""
    paths = [root]
    for part in parts:
        paths.append(paths[-1] / part)
    for path in paths:
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return paths[-1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def find_upload(
    conn: Connection,
    archive_root: Path,
    *,
    source_key: str | None = None,
    upload_id: str | None = None,
    latest_of_lea: str | None = None,
) -> Upload | None:
    """An upload already received, rebuilt from ingest.uploads and the archive."""
    row = upload_rows.upload_record(
        conn, source_key=source_key, upload_id=upload_id, latest_of_lea=latest_of_lea
    )
    return None if row is None else ledger.upload_from_record(archive_root, *row)


def clear_inbox(sftp: SftpResource, upload: Upload) -> None:
    """Move the upload's files to processed/<upload_id>/: an empty inbox tells the LEA.

    Only the versions that were received move: a file the LEA replaced since stays for the
    next upload. Refused regular files go too (a rejected upload also leaves the inbox
    empty); folders, links and files whose names are unsafe in a path are left untouched."""
    received = {(f.name, f.size, f.mtime) for f in upload.files} | {
        (f.name, f.size, f.mtime) for f in upload.refused if f.kind == "file"
    }
    movable = [
        f
        for f in sftp.list_dir(inbox(upload.lea_id))
        if f.kind == "file" and unsafe_name(f) is None
    ]
    # The `ready` marker goes first: an inbox half-way through being cleared must never look
    # like a complete upload of the files not yet moved.
    sftp.move_files(
        [f.name for f in movable if is_ready_marker(f.name)]
        + [
            f.name
            for f in movable
            if not is_ready_marker(f.name) and (f.name, f.size, f.mtime) in received
        ],
        inbox(upload.lea_id),
        processed(upload.lea_id, upload.upload_id),
    )
