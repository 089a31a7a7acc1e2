import os

import dagster as dg

from rostering_pipeline.lea_settings import DEFAULT_PATH, LeaSettingsResource
from rostering_pipeline.notify import Notifier
from rostering_pipeline.settings import ingest_settings_from_env, sftp_from_env, warehouse_from_env


@dg.definitions
def resources() -> dg.Definitions:
    settings_path = os.environ.get("ROSTERING_LEA_SETTINGS", DEFAULT_PATH)
    return dg.Definitions(
        resources={
            "sftp": sftp_from_env(),
            "warehouse": warehouse_from_env(),
            "ingest_settings": ingest_settings_from_env(),
            "lea_settings": LeaSettingsResource(path=settings_path),
            "notifier": Notifier(),
            # A sync run executes in one process (sync_upload's in-process executor), so its
            # steps hand tables to each other in memory: no student record is written to
            # Dagster's storage, and no time goes on pickling frames and logging each load.
            # A run always starts at raw_upload (a re-run replays the archived upload).
            "io_manager": dg.mem_io_manager,
        }
    )
