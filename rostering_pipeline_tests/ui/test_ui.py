"""The operator's view: `dagster dev` on the synced sample LEAs, seen through Chromium and the
GraphQL API of the same webserver.

The sample LEAs are synced in this process first (DuckDB allows one process at a time, and the
webserver opens the warehouse only for a run), then `dagster dev` starts on a free port of
127.0.0.1 in its own process group, which is always killed at the end.

To refresh the README's screenshot:
`ROSTERING_SCREENSHOTS=docs uv run pytest rostering_pipeline_tests/ui/test_ui.py`
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import GRPC_INFO_TAG  # a hidden tag: read from the instance
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from rostering_demo.demo import group_members
from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_pipeline.definitions import defs
from rostering_pipeline.runner import sync_once
from rostering_pipeline_tests.conftest import pipeline_env

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "sample_uploads"
SAMPLE_LEAS = ("015901", "101912", "227901")
#: The sample LEA whose next upload drops half its students: held by the safeguard.
HELD_LEA = "101912"
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
    "applied_roster": {"reconciliation", "referential_integrity", "latest_upload_applied"},
}
#: None: a held upload is a decision waiting for an operator, not a failed run.
BLOCKING_CHECKS: set[str] = set()
#: What each check's latest evaluation (the hold's run) shows: the held upload warns, and
#: reconciliation, which had nothing applied to check, is skipped rather than Passed.
CHECK_STATES = {
    "mass_drop_safeguard": "Failed",
    "latest_upload_applied": "Failed",
    "reconciliation": "Skipped",
    "referential_integrity": "Succeeded",
}
#: How long the daemon may take to start a sensor's run and finish it.
DAEMON_TIMEOUT_S = 180


#: Straight to the webserver on loopback, whatever proxy the environment names.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Webserver:
    url: str
    #: The demo SFTP server's folders (an LEA's inbox is `<sftp_root>/<lea_id>/inbox`).
    sftp_root: Path | None = None
    warehouse: Path | None = None
    #: Its Dagster instance's DAGSTER_HOME, to read what the UI does not show (hidden tags).
    home: Path | None = None

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
            if process.returncode is not None and not group_members(process.pid):
                return
            time.sleep(0.2)
    left = group_members(process.pid)
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


def _drop_half_the_students(sftp_root: Path, lea_id: str) -> None:
    """Put the LEA's sample upload in its inbox again with half of its students (and their
    enrollments) left out."""
    files = {p.name: p.read_text() for p in (SAMPLES / lea_id / "inbox").iterdir()}
    students = files["students.csv"].splitlines(keepends=True)
    kept = students[: 1 + (len(students) - 1) // 2]
    ids = {line.split(",", 1)[0] for line in kept[1:]}
    enrollments = files["enrollments.csv"].splitlines(keepends=True)
    files["students.csv"] = "".join(kept)
    files["enrollments.csv"] = "".join(
        [enrollments[0], *(e for e in enrollments[1:] if e.rstrip().split(",")[1] in ids)]
    )
    inbox = sftp_root / lea_id / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, text in files.items():
        if name != "ready":
            (inbox / name).write_text(text)
    (inbox / "ready").write_text("")  # last: the upload is complete


def _statuses(warehouse: Path) -> dict[str, list[str]]:
    """Each LEA's uploads' statuses, oldest first. The webserver opens the warehouse only for
    a run: wait (bounded) while one holds it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with duckdb.connect(str(warehouse), read_only=True) as conn:
                rows = conn.execute(
                    "select lea_id, list(status order by received_at) from ingest.uploads"
                    " group by lea_id order by lea_id"
                ).fetchall()
            return dict(rows)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
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
            # The next day HELD_LEA sends half its students: the safeguard holds it.
            _drop_half_the_students(sftp_root, HELD_LEA)
            sync_once(defs(), instance)
        warehouse = Path(env["ROSTERING_WAREHOUSE"])
        assert _statuses(warehouse) == {
            "015901": ["applied"],
            "101912": ["applied", "held"],
            "227901": ["rejected"],
        }

        url = f"http://127.0.0.1:{_free_port()}"
        server = Webserver(url, sftp_root, warehouse, home)
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
            # A held or rejected upload is not a green roster: some checks warn.
            expect(node).to_contain_text("Asset checks")
            expect(node).not_to_contain_text(re.compile(r"Asset checks\s*(\d+) / \1 Passed"))
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
            expect(entry).to_contain_text(CHECK_STATES[check])


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
    # The run's row names its upload; the launcher's bookkeeping is hidden from the UI.
    assert tags.get("upload_id", "").startswith(f"{SAMPLE_LEAS[0]}-"), tags
    with dg.DagsterInstance.from_config(str(webserver.home)) as instance:
        stored = instance.get_run_by_id(run_id)
    assert stored is not None
    # Started by the code server that Dagster's own launcher asked (its gRPC address).
    assert stored.tags.get(GRPC_INFO_TAG), stored.tags
    assert GRPC_INFO_TAG not in tags


# -- the operator's first look, and deciding a held upload ---------------------------------


def _keep_screenshot(page: Page, name: str, tmp_path: Path) -> None:
    """A screenshot for the README when ROSTERING_SCREENSHOTS names a folder."""
    page.screenshot(path=tmp_path / name, full_page=True)
    if folder := os.environ.get("ROSTERING_SCREENSHOTS"):
        target = REPO / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, target / name)


def _open_asset_launchpad(page: Page, url: str) -> None:
    """The asset page's Materialize menu → Open launchpad."""
    page.goto(url)
    materialize = page.get_by_role("button", name="Materialize…")
    expect(materialize).to_be_visible()
    box = materialize.bounding_box()
    assert box is not None
    # The menu's caret is the button's right-hand neighbour.
    page.mouse.click(box["x"] + box["width"] + 12, box["y"] + box["height"] / 2)
    page.get_by_role("menuitem", name="Open launchpad").click()
    expect(page.get_by_text("Launchpad (configure assets)")).to_be_visible()


def _pick_partition(page: Page, key: str) -> None:
    """Type the partition into the launchpad's picker and take it with Enter. Typed before the
    picker has loaded its partitions (seen under the suite's load), Enter takes nothing: type
    it again, a bounded number of times."""
    picker = page.get_by_placeholder("Partition")
    for attempt in range(4):
        picker.click()
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.type(key)
        page.keyboard.press("Enter")
        try:
            expect(page.get_by_text(f"partition: {key}")).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            if attempt == 3:
                raise


@pytest.mark.parametrize("asset", ["raw_upload", "applied_roster"])
def test_an_assets_launchpad_opens_with_a_valid_config(
    webserver: Webserver, page: Page, asset: str
) -> None:
    """Materialize → Open launchpad, pick an LEA: the config is valid, Materialize enabled
    (it read `unexpected config entry "raw_upload_lea_freshness"` and was disabled)."""
    _open_asset_launchpad(page, f"{webserver.url}/assets/{asset}")
    _pick_partition(page, SAMPLE_LEAS[0])

    expect(page.get_by_text("No errors")).to_be_visible()
    expect(page.get_by_text("unexpected config entry")).to_have_count(0)
    launchpad = page.get_by_role("dialog")
    expect(launchpad.get_by_role("button", name=re.compile(r"Materialize$"))).to_be_enabled()


def _open_board_until(page: Page, webserver: Webserver, shown: Callable[[], bool]) -> None:
    """Open the board, reloading (bounded) until its sensor's refresh shows what is awaited."""
    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    while True:
        page.goto(f"{webserver.url}/assets/lea_status_board")
        expect(page.get_by_text("Latest materialization")).to_be_visible()
        page.wait_for_load_state("networkidle")
        if shown():
            return
        assert time.monotonic() < deadline, "the status board was not refreshed in time"
        time.sleep(3)


def _board_row(page: Page, lea_id: str):
    """The LEA's row of the board's table (the first of the page's renderings of it)."""
    cell = page.locator("td", has_text=re.compile(f"^{lea_id}$"))
    return page.locator("tr").filter(has=cell).filter(has_not=page.locator("tr")).first


def test_status_board_shows_every_lea_and_where_it_stands(
    webserver: Webserver, page: Page, tmp_path: Path
) -> None:
    """lea_status_board, refreshed by its sensor after the sync runs: each LEA's latest
    upload, its state and counts, with links to its run and report."""
    _open_board_until(page, webserver, lambda: page.get_by_text("Never materialized").count() == 0)
    expect(page.get_by_text("Every LEA's latest upload", exact=False)).to_be_visible()
    statuses = _statuses(webserver.warehouse)
    for lea_id, state in (("015901", "applied"), (HELD_LEA, "held (safeguard)"), ("227901", "rejected")):  # fmt: skip
        expect(_board_row(page, lea_id)).to_contain_text(state)
    held = _board_row(page, HELD_LEA)
    expect(held).to_contain_text(re.compile(rf"{HELD_LEA}-\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}"))
    expect(_board_row(page, "015901")).to_contain_text("80")  # its students
    assert statuses[HELD_LEA][-1] == "held"
    _keep_screenshot(page, "status-board.png", tmp_path)

    # The markdown board links each LEA to its run and its report (inline, or behind
    # [Show Markdown] once the table is long).
    links = page.locator("tr").filter(has=page.get_by_text("board_with_links", exact=True)).first
    scope = links
    if links.get_by_text("[Show Markdown]").count():
        links.get_by_text("[Show Markdown]").click()
        scope = page.get_by_role("dialog")
    run_id = webserver.graphql(
        '{ runsOrError(filter: {tags: [{key: "dagster/partition", value: "LEA"}]}, limit: 1)'
        " { ... on Runs { results { runId } } } }".replace("LEA", HELD_LEA)
    )["runsOrError"]["results"][0]["runId"]
    for lea_id in SAMPLE_LEAS:
        report = scope.locator(f'a[href="/assets/sync_report?partition={lea_id}"]')
        expect(report).to_have_text("sync_report")
    expect(scope.locator(f'a[href="/runs/{run_id}"]')).to_have_text(run_id[:8])


def _held_upload_id(webserver: Webserver) -> str:
    deadline = time.monotonic() + 60
    while True:
        with duckdb.connect(str(webserver.warehouse), read_only=True) as conn:
            row = conn.execute(
                "select upload_id from ingest.uploads where lea_id = ? and status = 'held'"
                " order by received_at desc limit 1",
                [HELD_LEA],
            ).fetchone()
        if row or time.monotonic() > deadline:
            assert row, f"no held upload of {HELD_LEA}"
            return row[0]
        time.sleep(1)


def test_a_held_upload_reads_as_a_decision_waiting_not_a_crash(
    webserver: Webserver, page: Page, tmp_path: Path
) -> None:
    """The hold's run succeeded; its log says what is held and why, with the upload_id and
    what to do; the check shows the numbers and the links that decide it."""
    upload_id = _held_upload_id(webserver)
    run = webserver.graphql(
        '{ runsOrError(filter: {tags: [{key: "dagster/partition", value: "LEA"}]}, limit: 1)'
        " { ... on Runs { results { runId status } } } }".replace("LEA", HELD_LEA)
    )["runsOrError"]["results"][0]
    assert run["status"] == "SUCCESS", run

    page.goto(f"{webserver.url}/runs/{run['runId']}")
    expect(page.get_by_text(re.compile(f"{upload_id} is held for review")).first).to_be_visible()
    expect(page.get_by_text("DagsterAssetCheckFailedError")).to_have_count(0)
    expect(page.get_by_text("Stack Trace")).to_have_count(0)

    _open_held_check(page, webserver, upload_id)
    expect(page.get_by_text("would drop 60 of 120 students").first).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"held_upload%3A\+release"))).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"held_upload%3A\+reject"))).to_be_visible()
    _keep_screenshot(page, "held-upload.png", tmp_path)


def _open_held_check(page: Page, webserver: Webserver, upload_id: str) -> None:
    """roster_diff → Partitions → the held LEA, reloaded (bounded) until its latest
    materialization is the hold of `upload_id`, with its reason and decision links."""
    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    while True:
        page.goto(f"{webserver.url}/assets/roster_diff?view=partitions&partition={HELD_LEA}")
        expect(page.get_by_text("Partitions Selected", exact=False).first).to_be_visible()
        page.wait_for_load_state("networkidle")
        if page.locator(f'a[href*="{upload_id}"]').count():
            return
        assert time.monotonic() < deadline, f"roster_diff never showed {upload_id} held"
        time.sleep(3)


def _decide_in_the_ui(
    webserver: Webserver, page: Page, browser: BrowserContext, word: str
) -> tuple[str, dict]:
    """As an operator: open the held upload's check, follow its release/reject link, read
    the Launchpad it opens, click Launch Run. Returns the upload_id and the run."""
    upload_id = _held_upload_id(webserver)
    _open_held_check(page, webserver, upload_id)
    expect(page.get_by_text("would drop 60 of 120 students").first).to_be_visible()
    with browser.expect_page() as opened:
        page.get_by_role("link", name=re.compile(rf"held_upload%3A\+{word}")).first.click()
    launchpad = opened.value
    try:
        expect(launchpad.get_by_text(f"partition: {HELD_LEA}")).to_be_visible()
        expect(launchpad.get_by_text(f"held_upload: {word}")).to_be_visible()
        expect(launchpad.get_by_text(upload_id)).to_be_visible()
        expect(launchpad.get_by_text("No errors")).to_be_visible()
        launchpad.get_by_role("button", name="Launch Run").click()
        expect(launchpad).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/([0-9a-f-]{36})", launchpad.url).group(1)
        run = _wait_for_run(webserver, run_id)
        expect(launchpad.get_by_text("Success").first).to_be_visible()
    finally:
        launchpad.close()
    return upload_id, run


def _wait_for_run(webserver: Webserver, run_id: str) -> dict:
    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    while True:
        run = webserver.graphql(
            '{ runOrError(runId: "RUN") { ... on Run { status tags { key value } } } }'.replace(
                "RUN", run_id
            )
        )["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            return run
        time.sleep(1)


def test_operator_rejects_a_held_upload_from_its_check(
    webserver: Webserver, page: Page, browser: BrowserContext
) -> None:
    upload_id, run = _decide_in_the_ui(webserver, page, browser, "reject")

    assert run["status"] == "SUCCESS", run
    assert _statuses(webserver.warehouse)[HELD_LEA] == ["applied", "rejected"]
    with duckdb.connect(str(webserver.warehouse), read_only=True) as conn:
        assert conn.execute(
            "select operator from ingest.uploads where upload_id = ?", [upload_id]
        ).fetchone() == ("reject",)
        assert conn.execute(
            "select count(*) from roster.students where lea_id = ?", [HELD_LEA]
        ).fetchone() == (120,)


def test_operator_releases_a_held_upload_from_its_check(
    webserver: Webserver, page: Page, browser: BrowserContext
) -> None:
    """A new upload dropping half the students arrives while the UI runs: the daemon's
    sensor syncs it, it is held (the run succeeds), and the operator releases it."""
    _drop_half_the_students(webserver.sftp_root, HELD_LEA)
    deadline = time.monotonic() + DAEMON_TIMEOUT_S
    while _statuses(webserver.warehouse)[HELD_LEA][-1:] != ["held"]:
        assert time.monotonic() < deadline, _statuses(webserver.warehouse)
        time.sleep(1)

    upload_id, run = _decide_in_the_ui(webserver, page, browser, "release")

    assert run["status"] == "SUCCESS", run
    assert _statuses(webserver.warehouse)[HELD_LEA] == ["applied", "rejected", "applied"]
    with duckdb.connect(str(webserver.warehouse), read_only=True) as conn:
        assert conn.execute(
            "select operator from ingest.uploads where upload_id = ?", [upload_id]
        ).fetchone() == ("release",)
        assert conn.execute(
            "select count(*) from roster.students where lea_id = ?", [HELD_LEA]
        ).fetchone() == (60,)

    # The board, refreshed by its sensor after the run (within about a minute), shows the
    # upload applied; until then it may still show the same upload held.
    def released() -> bool:
        row = _board_row(page, HELD_LEA).inner_text()
        return upload_id in row and "applied" in row and "held" not in row

    _open_board_until(page, webserver, released)
    expect(_board_row(page, HELD_LEA)).to_contain_text("applied")
