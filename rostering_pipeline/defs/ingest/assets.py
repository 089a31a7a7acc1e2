from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from rostering_pipeline import ledger
from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.ingest import (
    ArchiveUnwritable,
    UploadNotReady,
    clear_inbox,
    download_upload,
    find_upload,
    inbox_files,
    reject_refused_upload,
)
from rostering_pipeline.markdown_text import md_text
from rostering_pipeline.run_tags import UNREAD_TAG, UPLOAD_ID_TAG
from rostering_pipeline.settings import IngestSettings
from rostering_pipeline.sftp import NotARealFolder, RemoteFile, SftpError, SftpResource
from rostering_pipeline.uploads import Upload, lea_folders, source_key
from rostering_pipeline.warehouse import WarehouseResource


class InboxFile(dg.Config):
    name: str
    size: int
    mtime: int


class RawUploadConfig(dg.Config):
    """Which upload to take. The sensor names the files it saw complete, when it saw them
    complete (the upload's received time) and the key of that arrival; launched by hand with
    no files, the run takes the inbox as it is now or, if empty, replays the LEA's latest
    archived upload (`replay_upload_id` picks an older one)."""

    files: list[InboxFile] = []
    upload_key: str | None = None
    received_at: str | None = None  # ISO 8601, set by the sensor
    replay_upload_id: str | None = None
    #: Set by the sensor when one of the LEA's folders was a link (it lists no such inbox):
    #: the run fails naming it, or does nothing if a real folder has replaced it since.
    refused_folder: str | None = None


@dg.asset(
    partitions_def=lea_partitions,
    group_name=stages.INGEST,
    kinds={"sftp"},
    owners=["team:rostering"],
    # No step retry policy: SftpResource retries dropped connections itself, and a failed run
    # is requested again by lea_inbox_sensor. (Dagster turns an interrupt into a retry of a
    # step with a policy, so Terminate in the UI would restart the download.)
    output_required=False,
)
def raw_upload(
    context: dg.AssetExecutionContext,
    config: RawUploadConfig,
    sftp: SftpResource,
    warehouse: WarehouseResource,
    ingest_settings: IngestSettings,
) -> Iterator[dg.Output[Upload]]:
    """An LEA's upload from its SFTP inbox, archived unchanged by sha256 and recorded."""
    lea_id = context.partition_key
    try:
        with sftp.connected():  # one SSH connection for the listing, files and moves
            # A link in place of any of the LEA's folders stops the run before anything is
            # read (each use checks again: the moves, the report).
            sftp.check_folders(lea_folders(lea_id))
            if config.refused_folder is not None:
                context.log.info(
                    f"LEA {lea_id}: {config.refused_folder} is a real folder again; the next "
                    "upload syncs as usual"
                )
                return
            upload = _receive(lea_id, config, sftp, warehouse, ingest_settings)
            archive_root = Path(ingest_settings.archive_root)
            with warehouse.connect() as conn:
                ledger.record_received(
                    conn, archive_root, upload, datetime.now(UTC), context.run.run_id
                )
            # The Runs page names the upload by the id operators use (reports, ingest.uploads).
            context.instance.add_run_tags(context.run.run_id, {UPLOAD_ID_TAG: upload.upload_id})
            if upload.refused:
                # Nothing of an upload with refused entries is read: the LEA is told what to
                # fix and the later steps are skipped (the run succeeds; the roster is
                # untouched).
                reject_refused_upload(sftp, warehouse, archive_root, upload, datetime.now(UTC))
            clear_inbox(sftp, upload)
    except UploadNotReady as error:
        # The LEA is still writing: not a fault. The changed listing is a new upload to the
        # sensor, which requests it once it is complete; this run reads and applies nothing.
        context.log.warning(str(error))
        context.instance.add_run_tags(context.run.run_id, {UNREAD_TAG: "true"})
        return
    except SftpError as error:
        raise _needs_operator(lea_id, error) from None
    except ArchiveUnwritable as error:
        raise dg.Failure(
            str(error),
            allow_retries=False,
            metadata={"lea_id": lea_id, "archive": ingest_settings.archive_root},
        ) from None
    context.log.info(
        f"LEA {lea_id}: upload {upload.upload_id} with {len(upload.files)} files"
        + (f", {len(upload.refused)} refused: upload rejected" if upload.refused else "")
    )
    if upload.refused:
        return
    yield dg.Output(
        upload,
        metadata={
            "upload_id": upload.upload_id,
            "received_at": upload.received_at.isoformat(),
            "files": dg.MetadataValue.md(
                "| file | bytes | sha256 |\n|---|---:|---|\n"
                + "\n".join(
                    f"| {md_text(f.name)} | {f.size:,} | `{f.sha256}` |" for f in upload.files
                )
            ),
            "file_count": len(upload.files),
            "total_bytes": sum(f.size for f in upload.files),
            "fingerprint": upload.fingerprint,
        },
    )


def _needs_operator(lea_id: str, error: SftpError) -> dg.Failure:
    """A wrong key, login or permission does not heal by retrying the step at once (the
    resource already retried transient faults): fail with what to fix. The sensor requests
    the upload again on a later tick, when the fix may be in."""
    metadata = {"lea_id": lea_id}
    if isinstance(error, NotARealFolder):
        metadata["folder"] = error.path
    return dg.Failure(f"LEA {lea_id}: {error}", allow_retries=False, metadata=metadata)


def _receive(
    lea_id: str,
    config: RawUploadConfig,
    sftp: SftpResource,
    warehouse: WarehouseResource,
    ingest_settings: IngestSettings,
) -> Upload:
    """The run's upload: the one to replay, one already archived, or the inbox's files."""
    archive_root = Path(ingest_settings.archive_root)
    upload = _known_upload(lea_id, config, warehouse, archive_root)
    if upload is not None:
        return upload
    now = datetime.now(UTC)
    files = [RemoteFile(f.name, f.size, f.mtime, "file") for f in config.files]
    by_hand = not files
    if by_hand:
        files = inbox_files(sftp, lea_id)
    key = config.upload_key or source_key(lea_id, files)
    # Not read-only: a run that died before the warehouse had its tables left a file without
    # them, and this open creates them (its retry would otherwise fail on a missing schema).
    with warehouse.connect() as conn:
        upload = find_upload(conn, archive_root, source_key=key)
    if upload is not None and by_hand and files:
        # Files in the inbox now arrived after that upload moved its own out: a new arrival
        # of the same listing (same names, sizes and times, perhaps other bytes).
        key, upload = f"{key}-{now:%Y%m%dT%H%M%S}", None
    if upload is None and files:
        received_at = datetime.fromisoformat(config.received_at) if config.received_at else now
        upload = download_upload(
            sftp,
            archive_root,
            lea_id,
            key,
            files,
            received_at=received_at,
            max_file_bytes=ingest_settings.max_file_bytes,
        )
    if upload is None:
        with warehouse.connect() as conn:
            upload = find_upload(conn, archive_root, latest_of_lea=lea_id)
    if upload is None:
        raise dg.Failure(
            f"LEA {lea_id} has no files in /{lea_id}/inbox/ and no archived upload to "
            "replay. Nothing to do until the LEA uploads.",
            allow_retries=False,
        )
    return upload


def _known_upload(
    lea_id: str, config: RawUploadConfig, warehouse: WarehouseResource, archive_root: Path
) -> Upload | None:
    if config.replay_upload_id is None:
        return None
    with warehouse.connect() as conn:
        upload = find_upload(conn, archive_root, upload_id=config.replay_upload_id)
    if upload is None or upload.lea_id != lea_id:
        raise dg.Failure(
            f"Upload {config.replay_upload_id} is not an archived upload of LEA {lea_id}. "
            "Pick an upload_id from ingest.uploads for this LEA.",
            allow_retries=False,
        )
    return upload
