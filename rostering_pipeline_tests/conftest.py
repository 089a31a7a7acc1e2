"""Fixtures that start real servers: an SFTP server on 127.0.0.1, a warehouse (a DuckDB file,
or a database of the PostgreSQL `./run test` starts), a Dagster instance. Each stops what it
started.

A test module runs its pipeline tests on both warehouse backends with
`pytestmark = BOTH_WAREHOUSES`; every other test uses the DuckDB file, the embedded default."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import time_machine
import yaml

from rostering_pipeline.runner import SyncedRun, reexecute, sync_once
from rostering_pipeline.settings import DEFAULT_QUIET_PERIOD_SECONDS, warehouse_from_env
from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline_tests.faulty_sftp import FaultySftpServer
from rostering_pipeline_tests.postgres import fresh_warehouse_dsn

REPO = Path(__file__).resolve().parent.parent
#: Production's run retries (deploy/dagster.yaml), so a test instance decides, as the daemon
#: would, which failed runs Dagster retries.
RUN_RETRIES = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_retries"]
DAY = 86_400
#: 2026-09-01 12:00 UTC: the first upload day of the tests.
DAY_ONE = 1_788_264_000
#: Runs a module's tests once on each warehouse backend (the `warehouse_backend` fixture).
BOTH_WAREHOUSES = pytest.mark.parametrize(
    "warehouse_backend", ["duckdb", "postgres"], indirect=True
)


@dataclass
class Pipeline:
    """The whole pipeline pointed at a test SFTP server, warehouse and Dagster instance."""

    root: Path
    sftp_root: Path
    instance: dg.DagsterInstance
    env: dict[str, str]
    cursor: Path = field(init=False)
    #: The day of the latest upload: `sync` runs on that day's clock (see `sync`).
    day: int | None = field(init=False, default=None)
    #: Where the test clock stood when the last `sync` ended: it never runs backwards.
    clock: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.cursor = self.root / "sensor_cursor.json"

    @property
    def warehouse(self) -> Path:
        """The DuckDB file (on the Postgres backend, a file nothing writes)."""
        return Path(self.env["ROSTERING_WAREHOUSE"])

    @property
    def backend(self) -> str:
        return "postgres" if self.env.get("ROSTERING_WAREHOUSE_DSN") else "duckdb"

    def warehouse_resource(self) -> WarehouseResource:
        """The warehouse the pipeline writes, as its definitions configure it."""
        return warehouse_from_env()

    def defs(self) -> dg.Definitions:
        from rostering_pipeline.definitions import defs

        return defs()

    def upload(
        self,
        lea_id: str,
        files: dict[str, str | bytes],
        *,
        day: int = 1,
        ready: bool = True,
    ) -> None:
        """Put files in the LEA's inbox as the LEA would, stamped with the upload day (the
        files' mtimes, and the clock of the next `sync`)."""
        self.day = day
        inbox = self.sftp_root / lea_id / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        stamp = DAY_ONE + (day - 1) * DAY
        for name, content in files.items():
            path = inbox / name
            path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
            os.utime(path, (stamp, stamp))
        if ready:
            (inbox / "ready").write_text("")

    def sync(self) -> list[SyncedRun]:
        """One sensor pass and its runs. The pipeline dates an upload by when it saw it
        complete, so the pass runs with the clock at noon UTC of the latest upload's day
        (time moving on from there, and never back before the previous sync ended, as a real
        clock would not): "day 2" is received on day 2."""
        if self.day is None:  # nothing uploaded yet: the real clock, which later syncs follow
            try:
                return sync_once(self.defs(), self.instance, cursor_path=self.cursor)
            finally:
                self.clock = time.time()
        start = max(DAY_ONE + (self.day - 1) * DAY, self.clock + 1)
        with time_machine.travel(start, tick=True):
            try:
                return sync_once(self.defs(), self.instance, cursor_path=self.cursor)
            finally:
                self.clock = time.time()

    def reexecute(self, run_id: str) -> SyncedRun:
        """What an operator's "Re-execute all" in the UI (or Dagster's run retry) launches,
        on the clock of the latest sync."""
        with time_machine.travel(self.clock + 1, tick=True):
            try:
                return reexecute(self.defs(), self.instance, run_id)
            finally:
                self.clock = time.time()

    def will_retry(self, run_id: str) -> bool:
        """Whether Dagster's run retries re-execute this failed run (the daemon acts on the
        tag Dagster sets when the run fails)."""
        run = self.instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE, run
        return run.tags.get("dagster/will_retry") == "true"

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of one read of the warehouse (SQL both backends take: `?` parameters)."""
        with self.warehouse_resource().connect(read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def execute(self, sql: str, params: list | None = None) -> None:
        """One write behind the pipeline's back, as a person with a SQL shell would."""
        with self.warehouse_resource().connect() as conn:
            conn.execute(sql, params or [])

    def outbox(self, lea_id: str) -> dict[str, str]:
        folder = self.sftp_root / lea_id / "outbox"
        return {p.name: p.read_text() for p in sorted(folder.glob("*"))} if folder.exists() else {}

    def check(self, asset: str, name: str) -> dg.AssetCheckEvaluation:
        """The latest evaluation of an asset check, from the instance's event log."""
        key = dg.AssetCheckKey(dg.AssetKey(asset), name)
        records = self.instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert records, f"check {asset}:{name} never ran"
        return records[0].event.dagster_event.event_specific_data

    def inbox(self, lea_id: str) -> list[str]:
        return sorted(p.name for p in (self.sftp_root / lea_id / "inbox").iterdir())


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[FaultySftpServer]:
    root = tmp_path / "sftp"
    root.mkdir()
    with FaultySftpServer(root) as server:
        yield server


def pipeline_env(
    root: Path, host: str, port: int, user: str, known_hosts_line: str
) -> dict[str, str]:
    known_hosts = root / "known_hosts"
    known_hosts.write_text(known_hosts_line + "\n")
    return {
        "ROSTERING_SFTP_HOST": host,
        "ROSTERING_SFTP_PORT": str(port),
        "ROSTERING_SFTP_USER": user,
        "ROSTERING_SFTP_KNOWN_HOSTS": str(known_hosts),
        "ROSTERING_WAREHOUSE": str(root / "warehouse.duckdb"),
        "ROSTERING_ARCHIVE": str(root / "archive"),
        "ROSTERING_QUIET_PERIOD_SECONDS": str(DEFAULT_QUIET_PERIOD_SECONDS),
    }


@pytest.fixture
def warehouse_backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that points the pipeline at its warehouse backend: nothing for the
    DuckDB file (pipeline_env names it), a fresh database for PostgreSQL."""
    backend = getattr(request, "param", "duckdb")
    if backend == "duckdb":
        yield {}
        return
    with fresh_warehouse_dsn() as dsn:
        yield {"ROSTERING_WAREHOUSE_DSN": dsn}


@pytest.fixture
def pipeline(
    tmp_path: Path,
    sftp_server: FaultySftpServer,
    monkeypatch: pytest.MonkeyPatch,
    warehouse_backend: dict[str, str],
) -> Iterator[Pipeline]:
    env = pipeline_env(
        tmp_path,
        sftp_server.host,
        sftp_server.port,
        sftp_server.username,
        sftp_server.host_key_line,
    )
    env["ROSTERING_SFTP_PASSWORD"] = sftp_server.password or ""
    env.update(warehouse_backend)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.ephemeral(settings={"run_retries": RUN_RETRIES}) as instance:
        yield Pipeline(tmp_path, sftp_server.root, instance, env)
