from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.ingest import (
    clear_inbox,
    download_upload,
    find_upload,
    inbox_files,
    record_upload,
)
from rostering_pipeline.settings import IngestSettings
from rostering_pipeline.sftp import RemoteFile, SftpResource
from rostering_pipeline.uploads import Upload, source_key
from rostering_pipeline.warehouse import WarehouseResource


class InboxFile(dg.Config):
    name: str
    size: int
    mtime: int


class RawUploadConfig(dg.Config):
    """Which upload to take. The sensor names the files it saw complete; launched by hand
    with no files, the run takes the inbox as it is now or, if empty, replays the LEA's
    latest archived upload (`replay_upload_id` picks an older one)."""

    files: list[InboxFile] = []
    replay_upload_id: str | None = None


@dg.asset(
    partitions_def=lea_partitions,
    group_name="ingest",
    kinds={"sftp"},
    owners=["team:rostering"],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
)
def raw_upload(
    context: dg.AssetExecutionContext,
    config: RawUploadConfig,
    sftp: SftpResource,
    warehouse: WarehouseResource,
    ingest_settings: IngestSettings,
) -> dg.Output[Upload]:
    """An LEA's upload from its SFTP inbox, archived unchanged by sha256 and recorded."""
    lea_id = context.partition_key
    archive_root = Path(ingest_settings.archive_root)
    upload = _known_upload(lea_id, config, warehouse, archive_root)
    if upload is None:
        files = [RemoteFile(f.name, f.size, f.mtime, "file") for f in config.files]
        if not files:
            files = inbox_files(sftp, lea_id)
        key = source_key(lea_id, files)
        with warehouse.connect(read_only=True) as conn:
            upload = find_upload(conn, archive_root, source_key=key)
        if upload is None and files:
            upload = download_upload(sftp, archive_root, lea_id, key, files)
        if upload is None:
            with warehouse.connect(read_only=True) as conn:
                upload = find_upload(conn, archive_root, latest_of_lea=lea_id)
        if upload is None:
            raise dg.Failure(
                f"LEA {lea_id} has no files in /{lea_id}/inbox/ and no archived upload to "
                "replay. Nothing to do until the LEA uploads."
            )
    with warehouse.connect() as conn:
        record_upload(conn, upload, datetime.now(UTC), context.run.run_id)
    clear_inbox(sftp, upload)
    context.log.info(f"LEA {lea_id}: upload {upload.upload_id} with {len(upload.files)} files")
    return dg.Output(
        upload,
        metadata={
            "upload_id": upload.upload_id,
            "received_at": upload.received_at.isoformat(),
            "files": dg.MetadataValue.md(
                "| file | bytes | sha256 |\n|---|---:|---|\n"
                + "\n".join(f"| {f.name} | {f.size:,} | `{f.sha256}` |" for f in upload.files)
            ),
            "file_count": len(upload.files),
            "total_bytes": sum(f.size for f in upload.files),
            "fingerprint": upload.fingerprint,
        },
    )


def _known_upload(
    lea_id: str, config: RawUploadConfig, warehouse: WarehouseResource, archive_root: Path
) -> Upload | None:
    if config.replay_upload_id is None:
        return None
    with warehouse.connect(read_only=True) as conn:
        upload = find_upload(conn, archive_root, upload_id=config.replay_upload_id)
    if upload is None or upload.lea_id != lea_id:
        raise dg.Failure(
            f"Upload {config.replay_upload_id} is not an archived upload of LEA {lea_id}. "
            "Pick an upload_id from ingest.uploads for this LEA."
        )
    return upload
