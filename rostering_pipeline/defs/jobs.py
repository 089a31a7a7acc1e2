import dagster as dg

from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions

#: One run per upload: from the inbox to the LEA's sync report.
sync_upload_job = dg.define_asset_job(
    "sync_upload",
    selection=dg.AssetSelection.groups(*stages.PIPELINE),
    partitions_def=lea_partitions,
    description="Receive one LEA upload, validate it, apply its changes and report back.",
    executor_def=dg.in_process_executor,
    # Dagster's run retries (deploy/dagster.yaml `run_retries`) re-execute a run whose
    # process died with all its steps: steps hand their tables to each other in memory, so
    # "from failure" would have nothing stored to start from. The retry takes the upload from
    # the archive if the dead run had received it (raw_upload finds it by its upload key).
    tags={"dagster/retry_strategy": "ALL_STEPS"},
)
