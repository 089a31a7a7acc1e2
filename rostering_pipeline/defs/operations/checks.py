from datetime import UTC, datetime

import dagster as dg

from rostering_pipeline.freshness import stale_leas
from rostering_pipeline.settings import STATE_TIMEZONE
from rostering_pipeline.warehouse import WarehouseResource

LEA_FRESHNESS = "lea_freshness"


class FreshnessConfig(dg.Config):
    max_school_days: int = 3


@dg.asset_check(
    asset="raw_upload",
    name=LEA_FRESHNESS,
    description="Warns about LEAs that have sent no upload for more than N school days "
    "(weekdays; default 3, set in the launch config). The metadata lists which LEAs and "
    "since when. Runs daily on the lea_freshness schedule.",
)
def lea_freshness(config: FreshnessConfig, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as conn:
        stale = stale_leas(conn, datetime.now(UTC).date(), config.max_school_days)
    return dg.AssetCheckResult(
        passed=stale.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_leas": dg.MetadataValue.md(
                "| LEA | last upload | school days since |\n|---|---|---:|\n"
                + "\n".join(f"| {r[0]} | {r[1]} | {r[2]} |" for r in stale.rows())
            ),
            "stale_count": stale.height,
            "max_school_days": config.max_school_days,
        },
    )


lea_freshness_job = dg.define_asset_job(
    "lea_freshness",
    selection=dg.AssetSelection.checks(lea_freshness),
    description="Flags LEAs that have gone quiet.",
)

lea_freshness_schedule = dg.ScheduleDefinition(
    job=lea_freshness_job,
    cron_schedule="0 7 * * 1-5",
    execution_timezone=STATE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every school-day morning, flag LEAs whose uploads stopped.",
)
