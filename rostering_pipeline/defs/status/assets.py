from datetime import UTC, datetime

import dagster as dg
import polars as pl

from rostering_pipeline.settings import STATE_TIMEZONE
from rostering_pipeline.status_board import (
    board_markdown,
    board_table,
    needs_attention,
    status_board,
)
from rostering_pipeline.warehouse import WarehouseResource

LEA_FRESHNESS = "lea_freshness"


class StatusBoardConfig(dg.Config):
    max_school_days: int = 3


@dg.asset(
    group_name="status",
    kinds={"duckdb"},
    owners=["team:rostering"],
    check_specs=[
        dg.AssetCheckSpec(
            LEA_FRESHNESS,
            asset="lea_status_board",
            description="Warns about LEAs that have sent no upload for more than N school "
            "days (weekdays; default 3, the board's max_school_days). The metadata lists "
            "which LEAs and since when. Evaluated with every refresh of the board.",
        )
    ],
)
def lea_status_board(
    config: StatusBoardConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every LEA's latest upload and where it stands (applied, held, rejected, failed,
    stale), with its counts and links to its runs and report: the page to open first.
    Refreshed within about a minute of sync runs ending, and each school-day morning."""
    with warehouse.connect(read_only=True) as conn:
        board = status_board(conn, datetime.now(UTC).date(), config.max_school_days)
    stale = board.filter("stale")
    attention = needs_attention(board)
    counts = board.group_by("state").len().sort("state").rows()
    return dg.MaterializeResult(
        metadata={
            "board": _table(board_table(board)),
            "board_with_links": dg.MetadataValue.md(board_markdown(board)),
            "needs_attention": dg.MetadataValue.md(
                board_markdown(attention) if attention.height else "Nothing: every LEA is fine."
            ),
            "leas": board.height,
            "leas_by_state": dg.MetadataValue.json(dict(counts)),
            "held": board.filter(pl.col("state") == "held").height,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=LEA_FRESHNESS,
                passed=stale.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "stale_leas": dg.MetadataValue.md(
                        "| LEA | latest upload received | school days since |\n|---|---|---:|\n"
                        + "\n".join(
                            f"| {r['lea_id']} | {r['received_at']:%Y-%m-%d} "
                            f"| {r['school_days_since']} |"
                            for r in stale.iter_rows(named=True)
                        )
                    ),
                    "stale_count": stale.height,
                    "max_school_days": config.max_school_days,
                },
            )
        ],
    )


def _table(rows: list[dict]) -> dg.TableMetadataValue:
    columns = [
        dg.TableColumn(name, "int" if name in INT_COLUMNS else "string")
        for name in (rows[0] if rows else {"LEA": ""})
    ]
    return dg.MetadataValue.table(
        [dg.TableRecord(r) for r in rows], schema=dg.TableSchema(columns=columns)
    )


INT_COLUMNS = {"adds", "updates", "drops", "rejected rows", "students"}

lea_status_board_job = dg.define_asset_job(
    "refresh_lea_status_board",
    selection=dg.AssetSelection.assets(lea_status_board),
    description="Refreshes the LEA status board and its lea_freshness check.",
    executor_def=dg.in_process_executor,  # one step, and outputs stay in memory
)

lea_freshness_schedule = dg.ScheduleDefinition(
    name="lea_freshness",
    job=lea_status_board_job,
    cron_schedule="0 7 * * 1-5",
    execution_timezone=STATE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every school-day morning, refresh the status board and flag LEAs whose "
    "uploads stopped (lea_freshness).",
)
