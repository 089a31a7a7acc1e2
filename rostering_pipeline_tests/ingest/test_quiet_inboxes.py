"""The sensor's tick reads an empty inbox only when its folder changed (quiet_inboxes.py), on
the real loopback SFTP server: what it skips is still empty, a file that lands is seen at the
next tick (also one made in the same second as the listing that saw the inbox empty), and a
server that keeps no folder times is found out by the next full listing."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from rostering_pipeline import sftp as sftp_module
from rostering_pipeline.quiet_inboxes import CONFIRM_SECONDS, QuietInboxes
from rostering_pipeline.sftp import SftpResource
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import day_one

LEAS = ["101912", "227901", "015901"]
AN_HOUR_AGO = int(time.time()) - 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders whose entries a listing read (the server still answers every read)."""
    folders: list[str] = []
    real = sftp_module._listdir_raw

    def listdir_raw(sftp, path: str):
        folders.append(path)
        return real(sftp, path)

    monkeypatch.setattr(sftp_module, "_listdir_raw", listdir_raw)
    return folders


def _resource(pipeline: Pipeline) -> SftpResource:
    env = pipeline.env
    return SftpResource(
        host=env["ROSTERING_SFTP_HOST"],
        port=int(env["ROSTERING_SFTP_PORT"]),
        username=env["ROSTERING_SFTP_USER"],
        password=env["ROSTERING_SFTP_PASSWORD"] or None,
        known_hosts_path=env["ROSTERING_SFTP_KNOWN_HOSTS"],
    )


def _empty_inboxes(root: Path, mtime: int = AN_HOUR_AGO) -> None:
    """Empty inboxes last changed an hour ago (as on a real server, time has passed since)."""
    for lea_id in LEAS:
        inbox = root / lea_id / "inbox"
        inbox.mkdir(parents=True)
        os.utime(inbox, (mtime, mtime))


def _quiet_server(
    pipeline: Pipeline, full_every_seconds: float
) -> tuple[SftpResource, QuietInboxes, Clock]:
    """The server with LEAS' empty inboxes, and a memory of it on a clock the test moves."""
    _empty_inboxes(pipeline.sftp_root)
    clock = Clock()
    return _resource(pipeline), QuietInboxes(full_every_seconds, clock=clock), clock


def _inboxes_read(read: list[str]) -> list[str]:
    listed = sorted(p.split("/")[1] for p in read if p.endswith("/inbox"))
    read.clear()
    return listed


def _tick(sftp: SftpResource, quiet: QuietInboxes, clock: Clock, seconds: float):
    clock.now += seconds
    return sftp.list_inboxes(quiet).inboxes


def test_an_empty_inbox_is_read_until_its_folder_time_is_confirmed_then_only_looked_at(
    pipeline: Pipeline, read: list[str]
) -> None:
    sftp, quiet, clock = _quiet_server(pipeline, full_every_seconds=60)

    first = _tick(sftp, quiet, clock, 0)  # the first tick reads everything
    assert _inboxes_read(read) == sorted(LEAS)
    soon = _tick(sftp, quiet, clock, CONFIRM_SECONDS / 2)  # too soon to trust the time
    assert _inboxes_read(read) == sorted(LEAS)
    confirming = _tick(sftp, quiet, clock, CONFIRM_SECONDS)
    assert _inboxes_read(read) == sorted(LEAS)
    quiet_ticks = [_tick(sftp, quiet, clock, 5) for _ in range(3)]
    assert _inboxes_read(read) == []
    full = _tick(sftp, quiet, clock, 60)  # a minute since the last full tick
    assert _inboxes_read(read) == sorted(LEAS)

    for listing in [first, soon, confirming, *quiet_ticks, full]:
        assert listing == {lea_id: [] for lea_id in LEAS}


def test_a_file_landing_in_a_quiet_inbox_is_seen_at_the_next_tick(
    pipeline: Pipeline, read: list[str]
) -> None:
    sftp, quiet, clock = _quiet_server(pipeline, full_every_seconds=600)
    for seconds in (0, 5):
        _tick(sftp, quiet, clock, seconds)
    _inboxes_read(read)
    assert _tick(sftp, quiet, clock, 5) == {lea_id: [] for lea_id in LEAS}
    assert _inboxes_read(read) == []

    (pipeline.sftp_root / LEAS[1] / "inbox" / "students.csv").write_text("x\n")
    landed = _tick(sftp, quiet, clock, 5)

    assert _inboxes_read(read) == [LEAS[1]]
    assert [f.name for f in landed[LEAS[1]]] == ["students.csv"]
    # An inbox holding files is read at every tick (a file written in place does not
    # change its folder's time, and the quiet period needs its size and time).
    _tick(sftp, quiet, clock, 5)
    assert _inboxes_read(read) == [LEAS[1]]


def test_a_file_made_in_the_same_second_as_the_empty_listing_is_seen(
    pipeline: Pipeline, read: list[str]
) -> None:
    """SFTP times are whole seconds: a file made in the second the inbox was seen empty leaves
    the folder's time as it was. The second listing, which confirms the time, sees it."""
    sftp, quiet, clock = _quiet_server(pipeline, full_every_seconds=600)
    _tick(sftp, quiet, clock, 0)
    inbox = pipeline.sftp_root / LEAS[0] / "inbox"
    (inbox / "students.csv").write_text("x\n")
    os.utime(inbox, (AN_HOUR_AGO, AN_HOUR_AGO))  # the folder's time, to the second, unchanged

    confirming = _tick(sftp, quiet, clock, CONFIRM_SECONDS)

    assert [f.name for f in confirming[LEAS[0]]] == ["students.csv"]


def test_a_server_that_keeps_no_folder_times_is_found_out_by_the_next_full_listing(
    pipeline: Pipeline, read: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    sftp, quiet, clock = _quiet_server(pipeline, full_every_seconds=60)
    for seconds in (0, 5, 5):
        _tick(sftp, quiet, clock, seconds)
    _inboxes_read(read)
    inbox = pipeline.sftp_root / LEAS[2] / "inbox"
    (inbox / "students.csv").write_text("x\n")
    os.utime(inbox, (AN_HOUR_AGO, AN_HOUR_AGO))  # what a server without folder times shows

    missed = _tick(sftp, quiet, clock, 5)
    assert missed[LEAS[2]] == [] and _inboxes_read(read) == []
    with caplog.at_level(logging.WARNING, logger="rostering_pipeline.quiet_inboxes"):
        found = _tick(sftp, quiet, clock, 60)
    after = _tick(sftp, quiet, clock, 5)

    assert [f.name for f in found[LEAS[2]]] == ["students.csv"]
    assert not quiet.trusted
    [warning] = caplog.records
    assert warning.getMessage().startswith(f"LEA {LEAS[2]}: its inbox holds files")
    assert "every inbox is read at every sensor tick" in warning.getMessage()
    assert _inboxes_read(read) == sorted(LEAS * 2)
    assert [f.name for f in after[LEAS[2]]] == ["students.csv"]


def test_the_sensor_skips_a_quiet_inbox_and_still_starts_the_run_when_files_land(
    pipeline: Pipeline, read: list[str]
) -> None:
    """The sensor as deployed (its memory, the real clock): two ticks more than
    CONFIRM_SECONDS apart confirm the empty inbox, the next tick does not read it, and the
    upload that lands is requested at the tick after."""
    inbox = pipeline.sftp_root / LEAS[0] / "inbox"
    inbox.mkdir(parents=True)
    os.utime(inbox, (AN_HOUR_AGO, AN_HOUR_AGO))
    defs = pipeline.defs()
    sensor = defs.resolve_sensor_def("lea_inbox_sensor")
    cursor = None

    def tick() -> dg.SensorResult:
        nonlocal cursor
        with dg.build_sensor_context(
            instance=pipeline.instance, resources=defs.resources, cursor=cursor
        ) as ctx:
            result = sensor(ctx)
        cursor = result.cursor
        return result

    tick()
    time.sleep(CONFIRM_SECONDS + 0.1)
    tick()
    assert _inboxes_read(read) == [LEAS[0], LEAS[0]]
    assert tick().run_requests == []
    assert _inboxes_read(read) == []

    pipeline.upload(LEAS[0], day_one())
    landed = tick()

    assert _inboxes_read(read) == [LEAS[0]]
    assert [r.partition_key for r in landed.run_requests] == [LEAS[0]]
