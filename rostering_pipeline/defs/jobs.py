import dagster as dg

from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions

#: One run per upload: from the inbox to the LEA's sync report.
sync_upload_job = dg.define_asset_job(
    "sync_upload",
    selection=dg.AssetSelection.groups(*stages.PIPELINE)
    - dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("raw_upload"), "lea_freshness")),
    partitions_def=lea_partitions,
    description="Receive one LEA upload, validate it, apply its changes and report back.",
    executor_def=dg.in_process_executor,
    tags={"dagster/max_retries": 0},
)
