from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from rostering_pipeline import ledger
from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.ingest import find_upload
from rostering_pipeline.notify import Notifier
from rostering_pipeline.outbox import deliver_failure_notice
from rostering_pipeline.run_tags import UPLOAD_KEY_TAG
from rostering_pipeline.settings import IngestSettings
from rostering_pipeline.sftp import SftpResource
from rostering_pipeline.uploads import Upload
from rostering_pipeline.warehouse import WAREHOUSE_ERRORS, Connection, WarehouseResource
from rostering_pipeline.warehouse import uploads as upload_rows


@dg.run_failure_sensor(
    monitored_jobs=[sync_upload_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a sync run fails, records why on the upload in ingest.uploads, tells "
    "the LEA in its outbox that the upload is received and will be processed once the problem "
    "is fixed, and notifies the operators (the log, unless another notifier is configured), "
    "saying whether Dagster retries the run (its process died) or it waits for them.",
)
def sync_run_failure_sensor(
    context: dg.RunFailureSensorContext,
    warehouse: WarehouseResource,
    sftp: SftpResource,
    ingest_settings: IngestSettings,
    notifier: Notifier,
) -> None:
    run = context.dagster_run
    lea_id = run.tags.get("lea_id") or run.tags.get("dagster/partition") or "?"
    steps = [
        f"{e.step_key}: {_root_cause(e.event_specific_data.error)}"
        for e in context.get_step_failure_events()
        if e.event_specific_data and e.event_specific_data.error
    ]
    summary = "; ".join(steps) or (context.failure_event.message or "run failed")[:300]
    upload, status = None, None
    try:
        with warehouse.connect(waiter="failure_sensor") as conn:
            upload = _upload_of(conn, run, ingest_settings)
            if upload is not None:
                status = (ledger.status_of(conn, upload.upload_id) or ("received",))[0]
            if status == "received":
                ledger.note_failure(
                    conn,
                    upload.upload_id,
                    f"run {run.run_id} failed at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {summary}",
                )
    except WAREHOUSE_ERRORS as error:
        context.log.warning(f"could not record the failure of run {run.run_id}: {error}")
    # Only an upload still waiting to be decided gets a notice: a held or decided one has its
    # report already, and the LEA is never told otherwise afterwards.
    if upload is not None and status == "received":
        try:
            deliver_failure_notice(sftp, upload, run.run_id)
        except Exception as error:  # the SFTP server may be what failed
            context.log.warning(f"could not write the failure notice for LEA {lea_id}: {error}")
    subject = {
        "received": f"LEA {lea_id}: sync run failed",
        "held": f"LEA {lea_id}: upload held for review",
        None: f"LEA {lea_id}: sync run failed before the upload was recorded",
    }.get(status, f"LEA {lea_id}: a run failed after the upload was decided ({status})")
    # Dagster decides when the run fails whether its run retries re-execute it (will_retry).
    fresh = context.instance.get_run_by_id(run.run_id) or run
    next_step = (
        "Dagster retries the run"
        if fresh.tags.get("dagster/will_retry") == "true"
        else "fix the cause, then re-execute the run (all steps)"
    )
    notifier.notify(
        subject,
        f"run {run.run_id}, upload {upload.upload_id if upload else 'not yet recorded'}: "
        f"{summary}. Next: {next_step}.",
    )


def _upload_of(conn: Connection, run: dg.DagsterRun, settings: IngestSettings) -> Upload | None:
    """The upload a run worked on: its replay config, its upload key tag, or its run id."""
    archive = Path(settings.archive_root)
    replay = ((run.run_config or {}).get("ops", {}).get("raw_upload", {}).get("config", {})).get(
        "replay_upload_id"
    )
    if replay:
        return find_upload(conn, archive, upload_id=replay)
    if run.tags.get(UPLOAD_KEY_TAG):
        found = find_upload(conn, archive, source_key=run.tags[UPLOAD_KEY_TAG])
        if found:
            return found
    upload_id = upload_rows.upload_id_of_run(conn, run.run_id)
    return find_upload(conn, archive, upload_id=upload_id) if upload_id else None


def _root_cause(error: SerializableErrorInfo) -> str:
    """The innermost error's first line: what went wrong, without Dagster's wrapping."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[0][:300]
