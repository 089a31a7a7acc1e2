"""The code location: everything under defs/, assembled, with links to the source."""

import os
import warnings
from pathlib import Path

import dagster as dg

# The archive, warehouse and outbox copies hold students' records: every file this process
# creates (those, Dagster's storage and logs) is readable by its owner only.
os.umask(0o077)


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        # Source links are a beta API in Dagster 1.13: said once here rather than in a dozen
        # BetaWarnings by every process that loads the code location (demo, UI, each run).
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(list(loaded.assets or []))
    return dg.Definitions(
        assets=assets,
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=loaded.resources,
    )
