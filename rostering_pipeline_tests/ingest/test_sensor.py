"""The inbox sensor: when an upload counts as complete, and what a tick asks for."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from rostering_pipeline.run_tags import UPLOAD_KEY_TAG
from rostering_pipeline.sftp import RemoteFile
from rostering_pipeline.uploads import is_ready_marker, scan_inboxes
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import day_one

QUIET = 120


def _file(name: str, size: int = 10, mtime: int = 1000) -> RemoteFile:
    return RemoteFile(name, size, mtime, "file")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ready", True), ("ready.txt", True), ("READY.done", True), ("already.csv", False)],
)
def test_ready_marker_names(name: str, expected: bool) -> None:
    assert is_ready_marker(name) is expected


def test_ready_marker_completes_an_upload_at_once() -> None:
    inbox = {"101912": [_file("students.csv"), _file("READY.done", 0)]}

    complete, pending = scan_inboxes(inbox, {}, now=0.0, quiet_period_seconds=QUIET)

    assert [(u.lea_id, [f.name for f in u.files]) for u in complete] == [
        ("101912", ["students.csv"])
    ]
    assert pending == {}


def test_upload_without_marker_waits_for_the_quiet_period() -> None:
    inbox = {"101912": [_file("students.csv")]}

    first, pending = scan_inboxes(inbox, {}, now=1000.0, quiet_period_seconds=QUIET)
    early, pending = scan_inboxes(
        inbox, pending, now=1000.0 + QUIET - 1, quiet_period_seconds=QUIET
    )
    late, pending = scan_inboxes(inbox, pending, now=1000.0 + QUIET, quiet_period_seconds=QUIET)

    assert first == [] and early == []
    assert [u.lea_id for u in late] == ["101912"]
    assert pending == {}


def test_a_growing_file_is_never_complete() -> None:
    pending: dict = {}
    for step in range(10):
        inbox = {"101912": [_file("students.csv", size=100 * (step + 1), mtime=1000 + step)]}
        complete, pending = scan_inboxes(
            inbox, pending, now=1000.0 + step * 60, quiet_period_seconds=QUIET
        )
        assert complete == [], f"complete while still growing at step {step}"


def test_sensor_registers_new_lea_and_keys_runs_by_listing(pipeline: Pipeline) -> None:
    pipeline.upload("101912", day_one())
    defs = pipeline.defs()
    sensor = defs.resolve_sensor_def("lea_inbox_sensor")

    with dg.build_sensor_context(instance=pipeline.instance, resources=defs.resources) as ctx:
        first = sensor(ctx)
    with dg.build_sensor_context(
        instance=pipeline.instance, resources=defs.resources, cursor=first.cursor
    ) as ctx:
        again = sensor(ctx)

    assert [r.partition_keys for r in first.dynamic_partitions_requests] == [["101912"]]
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.partition_key == "101912"
    files = request.run_config["ops"]["raw_upload"]["config"]["files"]
    assert sorted(f["name"] for f in files) == sorted(day_one())
    assert [r.run_key for r in again.run_requests] == [request.run_key]


def test_sensor_waits_for_quiet_inbox_across_ticks(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSTERING_QUIET_PERIOD_SECONDS", "1")
    pipeline.upload("101912", day_one(), ready=False)
    defs = pipeline.defs()
    sensor = defs.resolve_sensor_def("lea_inbox_sensor")

    with dg.build_sensor_context(instance=pipeline.instance, resources=defs.resources) as ctx:
        first = sensor(ctx)
    time.sleep(1.2)
    with dg.build_sensor_context(
        instance=pipeline.instance, resources=defs.resources, cursor=first.cursor
    ) as ctx:
        second = sensor(ctx)

    assert first.run_requests == []
    assert "101912" in json.loads(first.cursor)["pending"]
    assert [r.partition_key for r in second.run_requests] == ["101912"]
    after = json.loads(second.cursor)
    assert after["pending"] == {}
    assert after["arrivals"]["101912"]["upload_key"] == second.run_requests[0].tags[UPLOAD_KEY_TAG]
