"""The lea_freshness check names the LEAs that have gone quiet."""

from __future__ import annotations

import time
from datetime import date

import duckdb

from rostering_pipeline.freshness import stale_leas
from rostering_pipeline_tests.conftest import DAY, DAY_ONE, Pipeline
from rostering_pipeline_tests.uploads import day_one


def _as_lea(lea_id: str) -> dict[str, str]:
    return {k: v.replace("101912", lea_id) for k, v in day_one().items()}


def test_freshness_check_flags_only_the_quiet_lea(pipeline: Pipeline) -> None:
    today = int((time.time() - DAY_ONE) // DAY) + 1
    pipeline.upload("101912", _as_lea("101912"), day=1)  # received 2026-09-01, months ago
    pipeline.sync()
    pipeline.upload("227901", _as_lea("227901"), day=today)
    pipeline.sync()

    result = (
        pipeline.defs()
        .resolve_job_def("refresh_lea_status_board")
        .execute_in_process(instance=pipeline.instance)
    )

    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.check_name == "lea_freshness"
    assert evaluation.passed is False
    assert evaluation.metadata["stale_count"].value == 1
    table = evaluation.metadata["stale_leas"].value
    assert "| 101912 | 2026-09-01 |" in table and "227901" not in table


def test_school_days_skip_weekends(tmp_path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("create schema ingest")
        conn.execute("create table ingest.uploads (lea_id varchar, received_at timestamptz)")
        conn.execute(
            "insert into ingest.uploads values ('111111', '2026-11-20 10:00:00+00'),"
            " ('222222', '2026-11-24 10:00:00+00')"
        )  # a Friday, a Tuesday

        result = stale_leas(conn, date(2026, 11, 27), max_school_days=3)  # the next Friday

    assert result.select("lea_id", "school_days_since").rows() == [("111111", 5)]
