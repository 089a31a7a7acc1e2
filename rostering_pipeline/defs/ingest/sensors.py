import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.ingest import UNREAD_TAG
from rostering_pipeline.settings import IngestSettings, env_number
from rostering_pipeline.sftp import NotARealFolder, SftpResource
from rostering_pipeline.uploads import UPLOAD_KEY_TAG, CompleteUpload, scan_inboxes
from rostering_pipeline.warehouse import WAREHOUSE_ERRORS, WarehouseResource
from rostering_pipeline.warehouse import uploads as upload_rows

#: Runs the sensor starts again by itself for an upload whose runs failed (a crash, a
#: restart, a dropped connection); past this, an operator re-executes (see the README).
MAX_AUTOMATIC_RETRIES = 3
#: Uploads decided longer ago than this are not looked at again by the recovery pass.
RECOVERY_WINDOW = timedelta(days=2)
#: Minimum seconds between ticks (ROSTERING_SENSOR_INTERVAL_SECONDS). Dagster's sensor daemon
#: looks at sensors every 5 s, so 3 s means "at every look": an upload waits 5 s at most for
#: the sensor (a 5 s minimum would be missed by a hair and wait for the next look, 10 s). A
#: tick lists every inbox in one SFTP session (1,200 LEA folders: ~0.3 s of the sensor
#: process's CPU).
TICK_SECONDS = int(env_number("SENSOR_INTERVAL_SECONDS", 3, minimum=1))


@dg.sensor(
    job=sync_upload_job,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists every LEA's SFTP inbox; when an upload is complete (a `ready` file, "
    "or no change for the quiet period) requests one sync run for it, registering the LEA "
    "as a partition the first time. An upload whose runs all failed (a crash, a restart) "
    f"is requested again, at most {MAX_AUTOMATIC_RETRIES} times. An LEA folder or inbox "
    "that is a symbolic link is never listed: one run per link fails, naming it.",
)
def lea_inbox_sensor(
    context: dg.SensorEvaluationContext,
    sftp: SftpResource,
    ingest_settings: IngestSettings,
    warehouse: WarehouseResource,
) -> dg.SensorResult:
    """Starts a run per complete upload; re-ticks are harmless because the run key names the
    upload's arrival (its inbox listing: names, sizes, server mtimes) and the attempt."""
    pending, arrivals = _read_cursor(context.cursor)
    tick_started = time.time()
    listing = sftp.list_inboxes()
    complete, pending = scan_inboxes(
        listing.inboxes, pending, time.time(), ingest_settings.quiet_period_seconds
    )
    known = set(context.instance.get_dynamic_partitions(lea_partitions.name))
    new_leas = sorted(({u.lea_id for u in complete} | set(listing.refused)) - known)
    keys = [u.source_key for u in complete] + [a["upload_key"] for a in arrivals.values()]
    runs_of = _runs_by_upload(context.instance, keys)
    arrivals = {
        u.lea_id: _arrival(u, arrivals.get(u.lea_id), runs_of, tick_started) for u in complete
    }
    runs = [
        r
        for u in complete
        if (
            r := _inbox_request(
                u, arrivals[u.lea_id], runs_of.get(arrivals[u.lea_id]["upload_key"], [])
            )
        )
    ]
    runs += [_refused_folder_request(lea_id, e) for lea_id, e in sorted(listing.refused.items())]
    runs += _recovery_requests(context, warehouse, {a["upload_key"] for a in arrivals.values()})
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[lea_partitions.build_add_request(new_leas)]
        if new_leas
        else [],
        cursor=json.dumps({"pending": pending, "arrivals": arrivals}, sort_keys=True),
    )


def _read_cursor(cursor: str | None) -> tuple[dict, dict]:
    """Inboxes still settling, and the arrival each complete inbox listing belongs to."""
    state = json.loads(cursor) if cursor else {}
    if "pending" not in state:  # the cursor of an earlier version held `pending` alone
        return state, {}
    return state["pending"], state.get("arrivals", {})


def _arrival(
    upload: CompleteUpload, seen: dict | None, runs_of: dict[str, list], tick_started: float
) -> dict:
    """Which arrival of the LEA's files this listing is: the one seen on earlier ticks, or a
    new one received now.

    The listing (names, sizes, mtimes) only tells that files changed. A run that succeeded
    has moved its files out of the inbox, so the same listing in an inbox listed after that
    run ended is new files (an SIS that keeps times and sizes, say): a new arrival, with a
    key of its own, so it is requested again and never mistaken for the applied one. An
    arrival is received when the sensor first sees it complete: that, not any time the
    LEA's client set, is the upload's received time."""
    now = datetime.now(UTC)
    if seen is None or seen.get("key") != upload.source_key:
        seen = {"key": upload.source_key, "upload_key": upload.source_key}
        seen["received_at"] = now.isoformat()
    runs = runs_of.get(seen["upload_key"], [])
    came_back = bool(
        runs
        and runs[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS
        and not _ended_unread(runs[0])  # that run moved nothing: see _failed_runs
        and (runs[0].end_time or tick_started) < tick_started
    )
    if not came_back:
        return seen
    key = f"{upload.source_key}-{now:%Y%m%dT%H%M%S}"
    return {"key": upload.source_key, "upload_key": key, "received_at": now.isoformat()}


def failed_attempts(
    instance: dg.DagsterInstance, upload_key: str, *, failed_after: datetime | None = None
) -> int | None:
    """How many runs of this upload failed, or None when none should start now: one is
    queued, running or succeeded, an operator cancelled one, the retries are used up, or
    the last failure is older than `failed_after` (the upload was decided since)."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={UPLOAD_KEY_TAG: upload_key}), limit=MAX_AUTOMATIC_RETRIES + 2
    )
    return _failed_runs(records, failed_after)


def _failed_runs(records: list[dg.RunRecord], failed_after: datetime | None) -> int | None:
    """failed_attempts over one upload's run records, newest first.

    A run that ended without reading the upload (its files changed under it: UNREAD_TAG)
    did not take it: it counts as an attempt (the next run key) but not as a failure, and
    is bounded the same way (a server whose listing never matches what it sends would
    otherwise start a run at every tick)."""
    failures = sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in records)
    unread = sum(map(_ended_unread, records))
    if failures + unread < len(records):
        return None
    if failures > MAX_AUTOMATIC_RETRIES or unread > MAX_AUTOMATIC_RETRIES:
        return None
    if failed_after is not None and records:
        ended = records[0].end_time or records[0].update_timestamp.timestamp()
        if ended < failed_after.timestamp():
            return None
    return len(records)


def _ended_unread(record: dg.RunRecord) -> bool:
    run = record.dagster_run
    return run.status == dg.DagsterRunStatus.SUCCESS and run.tags.get(UNREAD_TAG) == "true"


def _run_key(base: str, attempt: int) -> str:
    return base if attempt == 0 else f"{base}-retry{attempt}"


def _runs_by_upload(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, list[dg.RunRecord]]:
    """The runs of each upload key, newest first, in one query for the whole tick (a busy
    morning has hundreds of uploads waiting in their inboxes at once)."""
    if not keys:
        return {}
    keys = sorted(set(keys))
    runs: dict[str, list[dg.RunRecord]] = {key: [] for key in keys}
    for record in instance.get_run_records(dg.RunsFilter(tags={UPLOAD_KEY_TAG: keys})):
        key = record.dagster_run.tags.get(UPLOAD_KEY_TAG)
        if key in runs:
            runs[key].append(record)
    return runs


def _inbox_request(
    upload: CompleteUpload, arrival: dict, runs: list[dg.RunRecord]
) -> dg.RunRequest | None:
    attempt = _failed_runs(runs, None)
    if attempt is None:
        return None
    return dg.RunRequest(
        run_key=_run_key(arrival["upload_key"], attempt),
        partition_key=upload.lea_id,
        run_config={
            "ops": {
                "raw_upload": {
                    "config": {
                        "files": [
                            {"name": f.name, "size": f.size, "mtime": f.mtime} for f in upload.files
                        ],
                        "upload_key": arrival["upload_key"],
                        "received_at": arrival["received_at"],
                    }
                }
            }
        },
        tags={"lea_id": upload.lea_id, UPLOAD_KEY_TAG: arrival["upload_key"]},
    )


def _refused_folder_request(lea_id: str, refused: NotARealFolder) -> dg.RunRequest:
    """A run that fails naming the LEA's folder that is a link (what the operators see, and
    are notified of); one per link (its run key names the link and its mtime)."""
    return dg.RunRequest(
        run_key=f"{lea_id}-not-a-folder-{refused.path.replace('/', '_')}-{refused.mtime}",
        partition_key=lea_id,
        run_config={"ops": {"raw_upload": {"config": {"refused_folder": refused.path}}}},
        tags={"lea_id": lea_id},
    )


def _recovery_requests(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, in_inbox: set[str]
) -> list[dg.RunRequest]:
    """Replays of archived uploads whose runs died after receiving them.

    Once received, an upload's files have left the inbox, so only ingest.uploads remembers
    it. One that is still `received`, or was decided lately but whose last run failed (after
    the roster was applied, on writing the report, say), is replayed from the archive: the
    apply is idempotent and the report is delivered on the replay. Held uploads wait for an
    operator and are left alone."""
    try:
        with warehouse.connect(read_only=True, waiter="sensor_tick") as conn:
            rows = upload_rows.recovery_candidates(conn, datetime.now(UTC) - RECOVERY_WINDOW)
    except WAREHOUSE_ERRORS as error:
        # The warehouse is busy (a run holds it) or not created yet: try on the next tick.
        context.log.info(f"recovery pass skipped this tick: {type(error).__name__}")
        return []
    # One query for the window's failed runs, rather than one per upload of every LEA.
    failed = _failed_upload_keys(context.instance, datetime.now(UTC) - RECOVERY_WINDOW)
    runs = []
    for upload_id, lea_id, upload_key, decided_at in rows:
        if upload_key in in_inbox:
            continue  # still in the inbox: the inbox request above covers it
        if upload_key not in failed:
            continue  # no run of it failed lately: nothing to recover
        attempt = failed_attempts(context.instance, upload_key, failed_after=decided_at)
        if not attempt:  # None, or 0: no run has failed (it ran in-process, say)
            continue
        runs.append(
            dg.RunRequest(
                run_key=_run_key(upload_id, attempt),
                partition_key=lea_id,
                run_config={"ops": {"raw_upload": {"config": {"replay_upload_id": upload_id}}}},
                tags={"lea_id": lea_id, UPLOAD_KEY_TAG: upload_key},
            )
        )
    return runs


def _failed_upload_keys(instance: dg.DagsterInstance, since: datetime) -> set[str]:
    """Upload keys of the sync runs that failed since `since`."""
    records = instance.get_run_records(
        dg.RunsFilter(
            job_name=sync_upload_job.name,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=since,
        )
    )
    return {key for r in records if (key := r.dagster_run.tags.get(UPLOAD_KEY_TAG))}
