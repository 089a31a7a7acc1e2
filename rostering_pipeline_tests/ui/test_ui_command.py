"""`./run ui` / `rostering ui` as an operator runs it: started, used, and stopped by a signal.

Each test starts the command in a session of its own on a free port of 127.0.0.1, with the demo's
folder moved to a temporary one (ROSTERING_DEMO_DIR), and kills whatever it left at the end."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from rostering_pipeline.defs import stages
from rostering_pipeline_tests.ui.test_ui import Webserver, _free_port, browser, page

__all__ = ["browser", "page"]  # test_ui's browser fixtures, for the lineage page

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "sample_uploads"
START_TIMEOUT_S = 180  # ./run ui runs `uv sync` first; the machine is shared
#: dagster dev gets 20 s to stop before it is killed (rostering_demo.demo.UI_STOP_GRACE_SECONDS), plus margin.
STOP_TIMEOUT_S = 45
#: A run's id, as Dagster's log lines for a run carry it.
RUN_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


@dataclass
class Ui:
    process: subprocess.Popen
    server: Webserver
    log: Path
    #: Every process seen in its family while it ran (dagster dev may be in another session).
    seen: set[int] = field(default_factory=set)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) of every process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[4]), fields[0])
    return table


def _family(root: int) -> set[int]:
    """The process, its descendants and every process of its session (still running)."""
    table = _processes()
    family = {pid for pid, (_, session, state) in table.items() if session == root and state != "Z"}
    family.add(root)
    grew = True
    while grew:
        children = {
            p for p, (parent, _, state) in table.items() if parent in family and state != "Z"
        }
        grew = not children <= family
        family |= children
    return {p for p in family if p in table and table[p][2] != "Z"}


def _running(pids: set[int]) -> set[int]:
    table = _processes()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _signals_as_started(ignore_sigint: bool) -> None:
    """In the child before it runs: SIGHUP at its default, as from a terminal, whatever the
    test run inherited (a suite started under nohup ignores SIGHUP, and `rostering ui` keeps
    an ignored SIGHUP ignored, as it should); with `ignore_sigint`, SIGINT ignored, as
    `./run ui &` in a script starts it (the shell's doing)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(tmp_path: Path, command: list[str], *, ignore_sigint: bool = False) -> Ui:
    demo = tmp_path / "demo"
    shutil.copytree(SAMPLES, demo / "sftp", ignore=shutil.ignore_patterns("README.md"))
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ROSTERING_") and k != "DAGSTER_HOME"
    }
    env["ROSTERING_DEMO_DIR"] = str(demo)
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=functools.partial(_signals_as_started, ignore_sigint),
        )
    ui = Ui(process, Webserver(f"http://127.0.0.1:{port}"), log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"{command} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            _kill(_family(process.pid))  # dagster dev not started yet, or in the family
            pytest.fail(f"{command}: no UI in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
        try:
            if ui.server.graphql("{ assetNodes { id } }")["assetNodes"]:
                return ui
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def started() -> Iterator[list[Ui]]:
    """The UIs a test started; whatever of them still runs at the end is killed."""
    uis: list[Ui] = []
    yield uis
    for ui in uis:
        _kill(_running(ui.seen | _family(ui.process.pid)))
        ui.process.wait(timeout=10)


@pytest.mark.parametrize(
    ("command", "sig", "ignore_sigint"),
    [
        pytest.param(["./run", "ui"], signal.SIGTERM, False, id="./run ui, SIGTERM"),
        pytest.param(
            ["uv", "run", "--frozen", "rostering", "ui"], signal.SIGHUP, False,
            id="uv run rostering ui, SIGHUP",
        ),
        pytest.param(
            ["./run", "ui"], signal.SIGINT, True, id="./run ui started with SIGINT ignored, SIGINT"
        ),
    ],
)  # fmt: skip
def test_a_stop_signal_stops_dagster_dev_and_the_sftp_server(
    tmp_path: Path, started: list[Ui], command: list[str], sig: signal.Signals, ignore_sigint: bool
) -> None:
    ui = _start(tmp_path, command, ignore_sigint=ignore_sigint)
    started.append(ui)
    family = _family(ui.process.pid)
    ui.seen |= family
    names = {pid: _cmdline(pid)[:100] for pid in family}
    for part in ("dagster dev", "dagster_webserver", "dagster._daemon", "dagster code-server"):
        assert any(part in name for name in names.values()), (part, names)
    [dev] = [pid for pid, name in names.items() if "dagster dev" in name]
    sftp_port = int(_environ(dev)["ROSTERING_SFTP_PORT"])
    ui_port = int(ui.server.url.rsplit(":", 1)[1])
    assert _listening(sftp_port) and _listening(ui_port)

    os.kill(ui.process.pid, sig)

    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        ui.process.poll()
        left = _running(family | _family(ui.process.pid))
        if ui.process.returncode is not None and not left:
            break
        time.sleep(0.5)
    left_names = {pid: _cmdline(pid)[:100] for pid in left}
    assert not left_names, f"still running {STOP_TIMEOUT_S}s after {sig.name}: {left_names}"
    assert ui.process.returncode == 0, ui.log.read_text()[-3000:]
    assert not _listening(ui_port), "the webserver's port is still open"
    assert not _listening(sftp_port), "the demo's SFTP server still listens"


@pytest.fixture(scope="module")
def quiet_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """`uv run rostering ui`, left to run; stopped with SIGTERM at the end."""
    ui = _start(tmp_path_factory.mktemp("ui"), ["uv", "run", "--frozen", "rostering", "ui"])
    ui.seen |= _family(ui.process.pid)
    try:
        yield ui
    finally:
        os.kill(ui.process.pid, signal.SIGTERM)
        try:
            ui.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        _kill(_running(ui.seen | _family(ui.process.pid)))


def _sensor_ticks(server: Webserver, sensor: str) -> int:
    data = server.graphql(
        """{ sensorOrError(sensorSelector: {repositoryLocationName: "rostering_pipeline",
              repositoryName: "__repository__", sensorName: "SENSOR"}) {
              ... on Sensor { sensorState { ticks(limit: 20) { status } } } } }""".replace(
            "SENSOR", sensor
        )
    )
    return len(data["sensorOrError"]["sensorState"]["ticks"])


def test_ui_prints_no_warnings_and_nothing_per_sensor_tick(quiet_ui: Ui) -> None:
    """An idle UI is quiet: no BetaWarning, no SupersessionWarning, no INFO lines per tick of
    the inbox sensor (it ticks every 5 s)."""
    deadline = time.monotonic() + 90
    while _sensor_ticks(quiet_ui.server, "lea_inbox_sensor") < 3:
        assert time.monotonic() < deadline, "lea_inbox_sensor did not tick 3 times in 90 s"
        time.sleep(1)
    lines = quiet_ui.log.read_text().splitlines()
    warnings = [line for line in lines if re.search(r"\w+Warning\b", line)]
    assert not warnings, f"{len(warnings)} warning lines:\n" + "\n".join(warnings[:5])
    ticks = [line for line in lines if "lea_inbox_sensor" in line]
    assert not ticks, ticks[:4]
    # Left: the SFTP server's and the UI's address, and, at a first start, the run-retry
    # daemon's one WARNING that it starts reading the event log from now ("No cursor …").
    # The demo's sample uploads land at start-up: the lines their sync runs log (each names
    # its run id) belong to those runs, not to the sensor's ticks.
    others = [
        line for line in lines if "No cursor for event type" not in line and not RUN_ID.search(line)
    ]
    assert len(others) <= 3, others


def test_ui_lists_the_asset_groups_in_pipeline_order(quiet_ui: Ui, page: Page) -> None:
    """The lineage page's sidebar sorts groups by name: the names put them in pipeline order."""
    page.goto(f"{quiet_ui.server.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("[data-svg-viewport]")
    expect(graph).to_be_visible()
    left_of_graph = (graph.bounding_box() or {"x": 0})["x"]
    expect(page.get_by_text(stages.INGEST, exact=True).first).to_be_visible()
    rows = {}
    for group in (*stages.PIPELINE, "settings"):
        for element in page.get_by_text(group, exact=True).all():
            box = element.bounding_box()
            if box and box["x"] < left_of_graph:  # the sidebar, not a node of the graph
                rows[group] = box["y"]
    assert sorted(rows, key=rows.__getitem__) == [*stages.PIPELINE, "settings"], rows
