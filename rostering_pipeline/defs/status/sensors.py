from datetime import datetime

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.status.assets import lea_status_board_job

ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.sensor(
    job=lea_status_board_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes lea_status_board when sync runs have ended since its last look "
    "(one refresh for however many ended).",
)
def lea_status_board_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One board run per tick in which sync runs ended; the cursor is the last run's update."""
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
