import json
import time

import dagster as dg

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.settings import IngestSettings
from rostering_pipeline.sftp import SftpResource
from rostering_pipeline.uploads import scan_inboxes


@dg.sensor(
    job=sync_upload_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists every LEA's SFTP inbox; when an upload is complete (a `ready` file, "
    "or no change for the quiet period) requests one sync run for it, registering the LEA "
    "as a partition the first time.",
)
def lea_inbox_sensor(
    context: dg.SensorEvaluationContext, sftp: SftpResource, ingest_settings: IngestSettings
) -> dg.SensorResult:
    """Starts a run per complete upload; re-ticks are harmless because the run key names the
    inbox listing (names, sizes, server mtimes)."""
    pending = json.loads(context.cursor) if context.cursor else {}
    inboxes = sftp.list_inboxes()
    complete, pending = scan_inboxes(
        inboxes, pending, time.time(), ingest_settings.quiet_period_seconds
    )
    known = set(context.instance.get_dynamic_partitions(lea_partitions.name))
    new_leas = sorted({u.lea_id for u in complete} - known)
    runs = [
        dg.RunRequest(
            run_key=upload.source_key,
            partition_key=upload.lea_id,
            run_config={
                "ops": {
                    "raw_upload": {
                        "config": {
                            "files": [
                                {"name": f.name, "size": f.size, "mtime": f.mtime}
                                for f in upload.files
                            ]
                        }
                    }
                }
            },
            tags={"lea_id": upload.lea_id},
        )
        for upload in complete
    ]
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[lea_partitions.build_add_request(new_leas)]
        if new_leas
        else [],
        cursor=json.dumps(pending, sort_keys=True),
    )
