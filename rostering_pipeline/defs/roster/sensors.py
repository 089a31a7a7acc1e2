from datetime import UTC, datetime

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.lea_settings import LeaSettingsResource
from rostering_pipeline.warehouse import WAREHOUSE_ERRORS, WarehouseResource
from rostering_pipeline.warehouse import uploads as upload_rows


@dg.sensor(
    job=sync_upload_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When an LEA's sync blackout ends, applies the newest upload held during it "
    "(older held uploads are marked superseded when it applies).",
)
def blackout_release_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    lea_settings: LeaSettingsResource,
) -> dg.SensorResult | dg.SkipReason:
    """Requests one replay run per LEA whose blackout-held upload may now be applied."""
    today = datetime.now(UTC).date()
    try:
        with warehouse.connect(read_only=True, waiter="sensor_tick") as conn:
            held = upload_rows.newest_blackout_held(conn)
    except WAREHOUSE_ERRORS:
        return dg.SkipReason("the warehouse is busy; trying again on the next tick")
    runs = []
    for lea_id, upload_id, received_at in held:
        blackout = lea_settings.for_lea(lea_id).blackout_on(received_at.date())
        if blackout is None or today > blackout.end:
            runs.append(
                dg.RunRequest(
                    run_key=f"blackout-release-{upload_id}",
                    partition_key=lea_id,
                    run_config={"ops": {"raw_upload": {"config": {"replay_upload_id": upload_id}}}},
                    tags={"lea_id": lea_id},
                )
            )
    return dg.SensorResult(run_requests=runs)
