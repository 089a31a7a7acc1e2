"""An operator's decision is final and history is only ever added to (issue 16, points 2 and
3; DESIGN invariant 9): a replay or backfill never decides again an upload an operator
decided, no report the LEA may have read is overwritten, every decision is kept in
ingest.decisions, and a run failing after the decision never tells the LEA otherwise."""

from __future__ import annotations

import logging

import dagster as dg
import pytest

from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.faulty_sftp import FaultySftpServer
from rostering_pipeline_tests.operations.test_run_failure import _run_failure_sensor
from rostering_pipeline_tests.roster.test_apply_invariants import _materialize as _run
from rostering_pipeline_tests.roster.test_apply_invariants import _upload

pytestmark = BOTH_WAREHOUSES

LEA = "101912"


def _held(pipeline: Pipeline) -> str:
    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _upload(60), day=2)
    assert [r.success for r in pipeline.sync()] == [True]  # held by the safeguard
    return pipeline.query("select upload_id from ingest.uploads where status = 'held'")[0][0]


def _decide(pipeline: Pipeline, upload_id: str, word: str) -> dg.ExecuteInProcessResult:
    return _run(
        pipeline,
        {
            "ops": {
                "raw_upload": {"config": {"replay_upload_id": upload_id}},
                "roster_diff": {"config": {"held_upload": word}},
            }
        },
    )


@pytest.mark.parametrize(
    ("word", "status", "students"), [("reject", "rejected", 100), ("release", "applied", 60)]
)
def test_a_backfill_never_decides_again_what_an_operator_decided(
    pipeline: Pipeline, word: str, status: str, students: int
) -> None:
    held = _held(pipeline)
    assert _decide(pipeline, held, word).success
    reports = pipeline.outbox(LEA)
    (reason,) = pipeline.query("select reason from ingest.uploads where upload_id = ?", [held])[0]

    backfill = _run(pipeline, {})  # a backfill of the LEA's partition: replays its latest

    assert backfill.success
    assert pipeline.query(
        "select status, reason, operator from ingest.uploads where upload_id = ?", [held]
    ) == [(status, reason, word)]
    assert pipeline.query("select count(*) from roster.students") == [(students,)]
    assert [
        (s, o, by)
        for s, _, o, by, _ in pipeline.query(
            "select status, reason, operator, decided_by, decided_at from ingest.decisions"
            " where upload_id = ? order by decided_at",
            [held],
        )
    ] == [("held", None, "run"), (status, word, f"operator ({word})")]
    after = pipeline.outbox(LEA)
    assert {n: after[n] for n in reports} == reports  # nothing the LEA may have read changed
    new = sorted(set(after) - set(reports))
    assert [n.split("_")[-1] for n in new] == ["3.csv", "3.md"]  # the replay's report, added
    assert "Held for review" not in after[next(n for n in new if n.endswith(".md"))]


def test_a_run_failing_after_an_operator_rejected_leaves_the_lea_its_report(
    pipeline: Pipeline, sftp_server: FaultySftpServer, caplog: pytest.LogCaptureFixture
) -> None:
    held = _held(pipeline)
    sftp_server.deny_writes = {f"/{LEA}/outbox"}
    rejecting = _decide(pipeline, held, "reject")  # decided, then the report step fails
    sftp_server.deny_writes = set()
    assert not rejecting.success
    before = pipeline.outbox(LEA)

    with caplog.at_level(logging.ERROR, logger="rostering.notifications"):
        _run_failure_sensor(pipeline, rejecting.run_id)

    assert pipeline.query(
        "select status, reason from ingest.uploads where upload_id = ?", [held]
    ) == [  # fmt: skip
        ("rejected", "an operator rejected the upload after the safeguard held it")
    ]
    assert pipeline.outbox(LEA) == before  # no "problem on our side" notice for a decided upload
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"LEA {LEA}: a run failed after the upload was decided (rejected)" in m for m in messages)  # fmt: skip
    assert not any("sync run failed" in m for m in messages)
