"""The per-LEA status board (issue 16 point 6): the lea_status_board asset and `rostering
status` tell each LEA's latest upload and where it stands, from the same warehouse rows."""

from __future__ import annotations

import pytest

from rostering_pipeline.cli import main
from rostering_pipeline.upload_spec.files import UPLOAD_FILES
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.operations.test_freshness import _as_lea
from rostering_pipeline_tests.roster.test_apply_invariants import _upload

pytestmark = BOTH_WAREHOUSES

HELD, APPLIED = "101912", "227901"


def _held_and_applied(pipeline: Pipeline) -> str:
    pipeline.upload(HELD, _upload(100), day=1)
    pipeline.upload(APPLIED, _as_lea(APPLIED), day=1)
    pipeline.sync()
    pipeline.upload(HELD, _upload(60), day=2)
    pipeline.sync()
    [(held,)] = pipeline.query("select upload_id from ingest.uploads where status = 'held'")
    return held


def test_rostering_status_prints_each_lea_and_what_to_do_with_a_held_upload(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    held = _held_and_applied(pipeline)

    code = main(["status", "--max-school-days", "100000"])  # the uploads' days are past

    out = capsys.readouterr().out.splitlines()
    assert code == 1  # an LEA needs an operator
    assert out[0].split()[:3] == ["lea_id", "state", "latest"]
    rows = {line.split()[0]: line for line in out[1:3]}
    assert rows[HELD].split()[1:4] == ["held", "(safeguard)", held]
    assert rows[APPLIED].split()[1] == "applied"
    assert out[4].startswith(f"Upload {held} of LEA {HELD} is held for review, not applied")
    assert "40 of 100 students" in out[4] and "held_upload: release or reject" in out[4]


def test_the_board_asset_shows_the_same_rows_and_flags_stale_leas(pipeline: Pipeline) -> None:
    held = _held_and_applied(pipeline)

    result = (
        pipeline.defs()
        .resolve_job_def("refresh_lea_status_board")
        .execute_in_process(instance=pipeline.instance)
    )

    [materialization] = result.asset_materializations_for_node("lea_status_board")
    table = materialization.metadata["board"].value
    rows = {r.data["LEA"]: r.data for r in table.records}
    assert rows[HELD]["state"].startswith("held (safeguard)")
    assert rows[HELD]["latest upload"] == held
    assert rows[APPLIED]["state"].startswith("applied") and rows[APPLIED]["students"] > 0
    # Its first upload: every row of its roster was an add; the held upload changed nothing.
    roster_rows = sum(
        pipeline.query(f"select count(*) from roster.{spec.entity} where lea_id = ?", [APPLIED])[0][
            0
        ]
        for spec in UPLOAD_FILES
    )
    counts = {k: rows[APPLIED][k] for k in ("adds", "updates", "drops")}
    assert counts == {"adds": roster_rows, "updates": 0, "drops": 0}
    assert [rows[HELD][k] for k in ("adds", "updates", "drops")] == [0, 0, 0]
    [freshness] = result.get_asset_check_evaluations()
    assert freshness.check_name == "lea_freshness"
    assert not freshness.passed  # both LEAs' uploads were received months ago
    assert freshness.metadata["stale_count"].value == 2
