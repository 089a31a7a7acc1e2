"""The operator's view: `dagster dev` on the synced sample LEAs, seen through Chromium and the
GraphQL API of the same webserver.

The sample LEAs are synced in this process first (DuckDB allows one process at a time, and the
webserver opens the warehouse only for a run), then `dagster dev` starts on a free port of
127.0.0.1 in its own process group, which is always killed at the end.

To refresh the README's screenshot:
`ROSTERING_SCREENSHOTS=docs uv run pytest rostering_pipeline_tests/test_ui.py`
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_pipeline.definitions import defs
from rostering_pipeline.runner import sync_once
from rostering_pipeline_tests.conftest import pipeline_env

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "sample_uploads"
SAMPLE_LEAS = ("015901", "101912", "227901")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing but the webserver on loopback: every other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
START_TIMEOUT_S = 180  # dagster dev took 64-80 s to come up on a loaded 2-core machine
STOP_TIMEOUT_S = 20
UI_TIMEOUT_MS = 30_000
#: Below 0.6 the asset graph draws bare names; a little above keeps the full nodes.
GRAPH_SCALE = 0.65

ENTITIES = ("campuses", "staff", "students", "classes", "enrollments", "co_teachers")
VALIDATED = tuple(f"validated_{e}" for e in ENTITIES)
#: DESIGN.md's asset graph, stage by stage: every asset depends only on earlier stages.
STAGES = (
    ("raw_upload",),
    (*VALIDATED, "upload_rejections"),
    ("roster_diff",),
    ("applied_roster",),
    ("sync_report",),
)
ASSETS = tuple(a for stage in STAGES for a in stage)
CHECKS = {
    "roster_diff": {"mass_drop_safeguard"},
    "applied_roster": {"reconciliation", "referential_integrity"},
}
BLOCKING_CHECKS = {"mass_drop_safeguard"}


#: Straight to the webserver on loopback, whatever proxy the environment names.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Webserver:
    url: str

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with _LOOPBACK.open(request, timeout=30) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _live_members(group: int) -> list[int]:
    """Processes of the process group that are still running (zombies aside)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group (dagster dev, its webserver, daemon and code servers), then
    SIGKILL whatever is still running after the grace period."""
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            if process.returncode is not None and not _live_members(process.pid):
                return
            time.sleep(0.2)
    left = _live_members(process.pid)
    assert not left, f"dagster dev left processes behind: {left}"


def _wait_until_ready(process: subprocess.Popen, server: Webserver, log: Path) -> None:
    """Bounded waits: the webserver answers, then the code location has loaded its assets."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"dagster dev not ready in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
        try:
            _LOOPBACK.open(f"{server.url}/server_info", timeout=2).close()
            if server.graphql("{ assetNodes { id } }")["assetNodes"]:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    """`dagster dev` on a Dagster instance where the sample LEAs have been synced."""
    root = tmp_path_factory.mktemp("ui")
    sftp_root = root / "sftp"
    shutil.copytree(SAMPLES, sftp_root, ignore=shutil.ignore_patterns("README.md"))
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with EmbeddedSftpServer(sftp_root) as sftp, pytest.MonkeyPatch.context() as monkeypatch:
        env = pipeline_env(root, sftp.host, sftp.port, sftp.username, sftp.host_key_line)
        env["ROSTERING_SFTP_PASSWORD"] = sftp.password or ""
        env["DAGSTER_HOME"] = str(home)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.get() as instance:
            runs = sync_once(defs(), instance)
        assert sorted(r.lea_id for r in runs) == list(SAMPLE_LEAS)
        assert all(r.success for r in runs), runs

        server = Webserver(f"http://127.0.0.1:{_free_port()}")
        log = root / "dagster_dev.log"
        port = server.url.rsplit(":", 1)[1]
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
                 "-h", "127.0.0.1", "-p", port],
                env={**os.environ, **env},
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            _wait_until_ready(process, server, log)
            yield server
        finally:
            _stop_group(process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a throwaway profile."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (./run test installs Debian's chromium)"
        if _in_ci():
            pytest.fail(f"CI requires the browser tests to run; {message}")
        pytest.skip(message)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        # Playwright refuses --user-data-dir among the args; this is the same thing.
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            # Browser-side preferences an operator would set once: the community sign-up
            # dialog dismissed, the navigation collapsed, the graph laid out top to bottom
            # (wider than tall, so the whole graph fits one screen).
            context.add_init_script(
                "localStorage.setItem('communityNux', '\"1\"');"
                "localStorage.setItem('dagster-nav-collapsed', 'true');"
                "localStorage.setItem('asset-graph-direction', '\"vertical\"');"
            )
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def test_ui_lineage_shows_every_asset_with_partitions_and_checks(
    webserver: Webserver, page: Page, tmp_path: Path
) -> None:
    page.goto(f"{webserver.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("[data-svg-viewport]")
    expect(graph.get_by_text("2_validate", exact=True).first).to_be_visible()
    graph.focus()
    page.keyboard.press("Alt+e")  # expand all groups (a fresh profile starts collapsed)
    expect(graph.get_by_text("raw_upload", exact=True)).to_be_visible()
    _fit_window_to_graph(page)

    for asset in ASSETS:
        node = graph.locator("foreignObject").filter(has=page.get_by_text(asset, exact=True))
        expect(node).to_have_count(1)
        # One partition per sample LEA, all of them materialized.
        expect(node).to_contain_text(f"{len(SAMPLE_LEAS)} partitions")
        expect(node).to_contain_text("100% filled")
        if asset in CHECKS:
            expect(node).to_contain_text(re.compile(r"Asset checks\s*(\d+) / \1 Passed"))
    page.screenshot(path=tmp_path / "asset-lineage.png")
    if folder := os.environ.get("ROSTERING_SCREENSHOTS"):
        target = REPO / folder  # an absolute folder stays absolute
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "asset-lineage.png", target / "asset-lineage.png")


def _fit_window_to_graph(page: Page) -> None:
    """Grow the window until the whole expanded graph fits at a scale that shows full asset
    nodes (the UI draws only names below 60 % and leaves off-screen nodes out of the DOM)."""
    size = page.evaluate(
        "() => { const svg = document.querySelector('[data-svg-viewport] svg');"
        " return [svg.width.baseVal.value, svg.height.baseVal.value]; }"
    )
    viewport = page.viewport_size or {"width": 0, "height": 0}
    graph = page.locator("[data-svg-viewport]").bounding_box() or {"width": 0, "height": 0}
    width = math.ceil(size[0] * GRAPH_SCALE + viewport["width"] - graph["width"])
    # The search bar floats over the top of the graph: leave a margin above and below.
    height = math.ceil(size[1] * GRAPH_SCALE + viewport["height"] - graph["height"] + 160)
    if width > viewport["width"] or height > viewport["height"]:
        page.set_viewport_size(
            {"width": max(width, viewport["width"]), "height": max(height, viewport["height"])}
        )
        page.reload()  # the graph fits itself to the window when it first lays out
    expect(
        page.locator("[data-svg-viewport]").get_by_text("sync_report", exact=True)
    ).to_be_visible()


def test_ui_asset_page_shows_partitions_and_check_results(webserver: Webserver, page: Page) -> None:
    page.goto(f"{webserver.url}/assets/applied_roster")
    expect(page.get_by_text("The LEA's roster in roster.*", exact=False)).to_be_visible()

    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text(f"{len(SAMPLE_LEAS)} Partitions Selected")).to_be_visible()
    expect(page.get_by_text(f"Materialized ({len(SAMPLE_LEAS)})")).to_be_visible()
    expect(page.get_by_text("Failed (0)")).to_be_visible()
    for lea_id in SAMPLE_LEAS:
        expect(page.get_by_title(lea_id, exact=True)).to_be_visible()

    for asset, checks in CHECKS.items():
        page.goto(f"{webserver.url}/assets/{asset}")
        page.get_by_role("tab", name="Checks").click()
        expect(page.get_by_text(re.compile(r"^Checks \(\d+\)$"))).to_be_visible()
        for check in sorted(checks):
            entry = page.locator("span", has=page.get_by_title(check, exact=True))
            expect(entry).to_contain_text("Succeeded")


def test_ui_graphql_returns_the_asset_graph_with_its_checks(webserver: Webserver) -> None:
    data = webserver.graphql(
        """{ assetNodes {
              assetKey { path }
              dependencyKeys { path }
              assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
              partitionKeysByDimension { partitionKeys }
        } }"""
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(ASSETS) <= set(nodes), sorted(set(ASSETS) - set(nodes))
    nodes = {asset: nodes[asset] for asset in ASSETS}  # other assets may sit beside them

    deps = {a: {"/".join(d["path"]) for d in n["dependencyKeys"]} for a, n in nodes.items()}
    stage = {asset: i for i, assets in enumerate(STAGES) for asset in assets}
    for asset, upstream in deps.items():
        assert all(stage[u] < stage[asset] for u in upstream & set(ASSETS)), (asset, upstream)
    assert not deps["raw_upload"] & set(ASSETS)
    for asset in STAGES[1]:
        assert deps[asset] & set(ASSETS) == {"raw_upload"}, asset
    assert set(VALIDATED) <= deps["roster_diff"]
    assert {"roster_diff", *VALIDATED} <= deps["applied_roster"]
    assert "applied_roster" in deps["sync_report"]

    checks = {
        asset: {c["name"]: c["blocking"] for c in n["assetChecksOrError"].get("checks", [])}
        for asset, n in nodes.items()
    }
    for asset, expected in CHECKS.items():
        assert expected <= set(checks[asset]), (asset, checks[asset])
        for check in expected:
            assert checks[asset][check] == (check in BLOCKING_CHECKS), (asset, check)

    for asset, node in nodes.items():
        [dimension] = node["partitionKeysByDimension"]
        assert sorted(dimension["partitionKeys"]) == list(SAMPLE_LEAS), asset


def test_run_launched_from_the_ui_is_started_by_the_daemon(webserver: Webserver) -> None:
    """Launch as the UI's Materialize does: queued, then started by dagster dev's daemon
    through deploy/dagster.yaml's run launcher, Dagster's own, which asks the code server
    (a gRPC server on localhost shared with the webserver) to start the run's process."""
    launched = webserver.graphql(
        """mutation { launchRun(executionParams: {
              selector: {repositoryLocationName: "rostering_pipeline",
                         repositoryName: "__repository__", jobName: "sync_upload"},
              runConfigData: {},
              executionMetadata: {tags: [{key: "dagster/partition", value: "PARTITION"}]}
           }) {
              __typename
              ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message }
              ... on RunConfigValidationInvalid { errors { message } }
        } }""".replace("PARTITION", SAMPLE_LEAS[0])
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + 180
    while True:
        run = webserver.graphql(
            '{ runOrError(runId: "RUN") { ... on Run { status tags { key value } } } }'.replace(
                "RUN", run_id
            )
        )["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            break
        time.sleep(1)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS", run
    assert "dagster/grpc_info" in tags, tags  # started by the code server the launcher asked
