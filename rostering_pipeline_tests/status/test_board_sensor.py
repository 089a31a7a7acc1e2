"""lea_status_board_sensor on a real Dagster instance: a refresh after sync runs end, but never
a second while one is queued or running (on a busy morning each refresh is a run that takes a
queue slot and a share of the cores from the LEAs' syncs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from rostering_pipeline.defs.jobs import sync_upload_job
from rostering_pipeline.defs.status.assets import lea_status_board_job
from rostering_pipeline.defs.status.sensors import lea_status_board_sensor


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def _run(instance: dg.DagsterInstance, job_name: str, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=status)
    instance.add_run(run)
    return run


def _tick(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return lea_status_board_sensor(context)


def test_a_refresh_waits_while_another_is_queued_or_running(instance: dg.DagsterInstance) -> None:
    _run(instance, sync_upload_job.name, dg.DagsterRunStatus.SUCCESS)
    board = _run(instance, lea_status_board_job.name, dg.DagsterRunStatus.STARTED)

    waiting = _tick(instance)
    assert not waiting.run_requests
    assert waiting.skip_reason and "queued or running" in waiting.skip_reason.skip_message

    instance.report_run_canceled(board)  # that refresh ended: the ended sync run is seen now
    refreshed = _tick(instance)
    assert len(refreshed.run_requests) == 1 and refreshed.cursor

    again = _tick(instance, refreshed.cursor)  # nothing ended since
    assert not again.run_requests
