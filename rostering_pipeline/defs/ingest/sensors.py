import json
import time
from datetime import UTC, datetime

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.quiet_inboxes import memory_for
from rostering_pipeline.run_tags import UNREAD_TAG, UPLOAD_KEY_TAG
from rostering_pipeline.settings import IngestSettings, env_number
from rostering_pipeline.sftp import NotARealFolder, SftpResource
from rostering_pipeline.uploads import CompleteUpload, scan_inboxes

#: Times the sensor requests again an upload whose runs all ended without reading it (its
#: files changed under the run, then were put back exactly as they were).
MAX_UNREAD_RUNS = 3
#: Minimum seconds between ticks (ROSTERING_SENSOR_INTERVAL_SECONDS). Dagster's sensor daemon
#: looks at sensors every 5 s, so 3 s means "at every look": an upload waits 5 s at most for
#: the sensor (a 5 s minimum would be missed by a hair and wait for the next look, 10 s). A
#: tick looks at every inbox in one SFTP session (1,200 LEA folders on OpenSSH: ~0.8 s of the
#: sensor process's CPU when it reads them all, ~0.3 s when it lstats the quiet ones:
#: benchmarks/bench_sensor_tick.py).
TICK_SECONDS = int(env_number("SENSOR_INTERVAL_SECONDS", 3, minimum=1))
#: Seconds between ticks that read every inbox (ROSTERING_SENSOR_FULL_LISTING_SECONDS); the
#: ticks between read only the inboxes whose folder changed or that held files, and lstat the
#: rest (rostering_pipeline/quiet_inboxes.py). 0: every tick reads every inbox.
FULL_LISTING_SECONDS = env_number("SENSOR_FULL_LISTING_SECONDS", 60, minimum=0)


@dg.sensor(
    job=sync_upload_job,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists every LEA's SFTP inbox; when an upload is complete (a `ready` file, "
    "or no change for the quiet period) requests one sync run for it, registering the LEA "
    "as a partition the first time. A run whose process died is retried by Dagster's run "
    "retries (deploy/dagster.yaml), not by this sensor. An LEA folder or inbox "
    "that is a symbolic link is never listed: one run per link fails, naming it.",
)
def lea_inbox_sensor(
    context: dg.SensorEvaluationContext,
    sftp: SftpResource,
    ingest_settings: IngestSettings,
) -> dg.SensorResult:
    """Starts a run per complete upload; re-ticks are harmless because the run key names the
    upload's arrival (its inbox listing: names, sizes, server mtimes)."""
    pending, arrivals = _read_cursor(context.cursor)
    tick_started = time.time()
    listing = sftp.list_inboxes(
        memory_for(
            (sftp.host, sftp.port, sftp.username, sftp.host_key, sftp.known_hosts_path),
            FULL_LISTING_SECONDS,
        )
    )
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
        and not _ended_unread(runs[0])  # that run moved nothing: see _unread_runs
        and (runs[0].end_time or tick_started) < tick_started
    )
    if not came_back:
        return seen
    key = f"{upload.source_key}-{now:%Y%m%dT%H%M%S}"
    return {"key": upload.source_key, "upload_key": key, "received_at": now.isoformat()}


def _unread_runs(records: list[dg.RunRecord]) -> int | None:
    """How many runs of one upload (its run records, newest first) ended without reading it,
    or None when the sensor should request no run for it now.

    An upload is requested once; a run that failed is Dagster's to retry (its process died)
    or an operator's to re-execute (a step failed: fix the cause first). A run that ended
    without reading the upload (its files changed under it: UNREAD_TAG) succeeded but did
    not take it: the same listing seen again is requested again under the next run key, at
    most MAX_UNREAD_RUNS times (a server whose listing never matches what it sends would
    otherwise start a run at every tick)."""
    unread = sum(map(_ended_unread, records))
    if unread < len(records) or unread > MAX_UNREAD_RUNS:
        return None
    return unread


def _ended_unread(record: dg.RunRecord) -> bool:
    run = record.dagster_run
    return run.status == dg.DagsterRunStatus.SUCCESS and run.tags.get(UNREAD_TAG) == "true"


def _run_key(base: str, unread: int) -> str:
    return base if unread == 0 else f"{base}-again{unread}"


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
    unread = _unread_runs(runs)
    if unread is None:
        return None
    return dg.RunRequest(
        run_key=_run_key(arrival["upload_key"], unread),
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
