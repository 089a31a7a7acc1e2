from datetime import datetime

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.status.assets import lea_status_board_job

ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

#: At most one refresh a minute, and none while one is queued or running. Each refresh is a
#: run of its own: on a busy morning (hundreds of sync runs ending) refreshes every few
#: seconds would take one of the run queue's slots and a share of the cores from the LEAs'
#: syncs (benchmarks/bench_statewide.py counts them). The board is then at most about a
#: minute behind the runs.
REFRESH_SECONDS = 60


@dg.sensor(
    job=lea_status_board_job,
    minimum_interval_seconds=REFRESH_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes lea_status_board when sync runs have ended since its last look "
    "(one refresh for however many ended; at most one a minute, none while one is queued "
    "or running).",
)
def lea_status_board_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One board run per tick in which sync runs ended; the cursor is the last run's update."""
    if context.instance.get_run_records(
        dg.RunsFilter(job_name=lea_status_board_job.name, statuses=UNFINISHED), limit=1
    ):
        return dg.SensorResult(skip_reason="a refresh of the board is queued or running")
    since = datetime.fromisoformat(context.cursor) if context.cursor else None
    ended = context.instance.get_run_records(
        dg.RunsFilter(job_name=sync_upload_job.name, statuses=ENDED, updated_after=since),
        limit=100,
    )
    if not ended:
        return dg.SensorResult(skip_reason="no sync run ended since the board's last refresh")
    last = max(r.update_timestamp for r in ended)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"after-{last.isoformat()}")],
        cursor=last.isoformat(),
    )
