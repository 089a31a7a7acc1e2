"""A failed sync run is recorded on its upload, explained to the LEA, and announced."""

from __future__ import annotations

import logging

import dagster as dg
import pytest

from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.fault_points import fail_at
from rostering_pipeline_tests.uploads import day_one

LEA = "101912"


def _run_failure_sensor(pipeline: Pipeline, run_id: str) -> None:
    defs = pipeline.defs()
    run = pipeline.instance.get_run_by_id(run_id)
    failure = pipeline.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    sensor = defs.resolve_sensor_def("sync_run_failure_sensor")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=pipeline.instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources=defs.resources,
    ).for_run_failure()
    sensor(context)


def test_failed_run_is_recorded_reported_and_notified(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fail_at(monkeypatch, "apply.mid:raise")
    pipeline.upload(LEA, day_one())
    [run] = pipeline.sync()
    assert not run.success

    with caplog.at_level(logging.ERROR, logger="rostering.notifications"):
        _run_failure_sensor(pipeline, run.run_id)

    [(status, reason)] = pipeline.query("select status, reason from ingest.uploads")
    assert status == "received"
    assert f"run {run.run_id} failed" in reason and "injected fault at apply.mid" in reason
    report = next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))
    assert "a problem on our side" in report and run.run_id in report
    assert any(
        f"LEA {LEA}: sync run failed" in r.getMessage()
        and run.run_id in r.getMessage()
        and "Next: fix the cause, then re-execute the run" in r.getMessage()
        for r in caplog.records
    )
    assert not pipeline.will_retry(run.run_id)  # a failed step: Dagster does not retry it
    assert pipeline.query("select count(*) from roster.students") == [(0,)]


def test_held_upload_is_announced_as_a_decision_not_a_failure(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    from rostering_pipeline_tests.roster.test_apply_invariants import _upload

    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _upload(60), day=2)

    with caplog.at_level(logging.ERROR, logger="rostering.notifications"):
        [run] = pipeline.sync()

    assert run.success  # a hold waits for a person; the software did not fail
    [(upload_id, status, reason)] = pipeline.query(
        "select upload_id, status, reason from ingest.uploads order by received_at desc limit 1"
    )
    assert status == "held" and "40 of 100 students" in reason
    report = sorted(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))
    assert any("Held for review" in t for t in report)
    assert not any("a problem on our side" in t for t in report)
    [notice] = [r.getMessage() for r in caplog.records]
    assert notice.startswith(f"LEA {LEA}: upload held for review: Upload {upload_id}")
    assert "40 of 100 students" in notice and "held_upload: release or reject" in notice
