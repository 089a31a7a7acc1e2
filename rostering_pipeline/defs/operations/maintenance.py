import time

import dagster as dg

from rostering_pipeline.settings import STATE_TIMEZONE
from rostering_pipeline.warehouse import WarehouseResource, compact_roster


@dg.op(
    description="Rewrites the roster tables without the rows applies deleted, each LEA's "
    "rows stored together. Holds the warehouse for the rewrite (seconds to a minute "
    "statewide); sync runs meanwhile wait for it.",
)
def compact_warehouse(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    started = time.monotonic()
    with warehouse.connect() as conn:
        groups = compact_roster(conn)
    summary = ", ".join(f"{t} {b}->{a}" for t, (b, a) in groups.items())
    context.log.info(
        f"roster tables compacted in {time.monotonic() - started:.1f} s; row groups {summary}"
    )


@dg.job(
    description="Nightly warehouse upkeep: reclaims the space of deleted roster rows and keeps "
    "each LEA's rows together.",
)
def warehouse_maintenance() -> None:
    compact_warehouse()


warehouse_maintenance_schedule = dg.ScheduleDefinition(
    job=warehouse_maintenance,
    cron_schedule="30 2 * * *",
    execution_timezone=STATE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:30, when LEAs are not uploading, compact the roster tables.",
)
