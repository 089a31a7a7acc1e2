"""The production profile's Dagster instance (deploy/postgres/dagster.yaml) on the real
PostgreSQL that `./run test` starts: it loads with its secrets from the environment only, keeps
its connections open (rostering_pipeline/instance_storage.py), and the pipeline syncs LEAs on
it, in this process and under a real dagster-daemon."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy
import yaml
from dagster._serdes import serialize_value

from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_pipeline.instance_storage import (
    DAGSTER_POSTGRES_VERSION,
    POOL_SIZE,
    PooledPostgresStorage,
)
from rostering_pipeline_tests.conftest import Pipeline, pipeline_env
from rostering_pipeline_tests.daemon import REPO, running_daemon
from rostering_pipeline_tests.operations.test_daemon import (
    FAILED_OR_DONE,
    _assert_applied_exactly_once,
    _leas,
    _put_uploads,
)
from rostering_pipeline_tests.postgres import (
    connections_to,
    fresh_database,
    postgres_dsn,
    query,
)
from rostering_pipeline_tests.uploads import day_one

PROFILE = REPO / "deploy" / "postgres" / "dagster.yaml"
EMBEDDED = REPO / "deploy" / "dagster.yaml"
LEA = "101912"


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch):
    """A fresh database on the test server; DAGSTER_PG_* set for this test."""
    with fresh_database(postgres_dsn()) as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env


def _home(tmp_path: Path, template: Path = PROFILE) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(template, home / "dagster.yaml")
    return home


def test_postgres_profile_loads_with_no_password_in_its_files(
    tmp_path: Path, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    password = pg_env["DAGSTER_PG_PASSWORD"]

    with dg.DagsterInstance.get() as instance:
        assert instance.get_ref().storage_data.class_name == PooledPostgresStorage.__name__
        instance.add_dynamic_partitions("lea", [LEA])
        assert instance.get_dynamic_partitions("lea") == [LEA]
        # What Dagster hands each run process on its command line (`ps` shows it).
        ref = serialize_value(instance.get_ref())

    # Stored in the server's database, not in DAGSTER_HOME.
    assert query(pg_env, "select partition from dynamic_partitions") == [(LEA,)]
    assert not list(home.glob("**/*.db"))
    assert password not in (home / "dagster.yaml").read_text()
    assert password not in ref
    assert "DAGSTER_PG_PASSWORD" in ref  # the variable's name travels, not its value


def test_postgres_profile_is_the_embedded_one_with_postgres_storage() -> None:
    """Run limits, monitoring and launcher are deploy/dagster.yaml's: the profiles differ in
    where the instance keeps its records, nothing else."""
    profile = yaml.safe_load(PROFILE.read_text())
    storage = profile.pop("storage")
    assert profile == yaml.safe_load(EMBEDDED.read_text())
    assert storage["custom"]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    fields = storage["custom"]["config"]["postgres_db"]
    assert all(set(value) == {"env"} for key, value in fields.items() if key != "scheme")


@pytest.mark.parametrize(
    ("stock", "fewest", "most"),
    [
        # dagster-postgres as shipped: a connection per query, so at least one per event.
        (True, 40, None),
        # This profile's storage: its connections stay open for the whole process.
        (False, None, 3),
    ],
    ids=["stock_postgres", "pooled_postgres"],
)
def test_pooled_postgres_storage_connects_once_not_per_event(
    tmp_path: Path,
    pg_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stock: bool,
    fewest: int | None,
    most: int | None,
) -> None:
    assert importlib.metadata.version("dagster-postgres") == DAGSTER_POSTGRES_VERSION, (
        "dagster-postgres moved on: check that rostering_pipeline/instance_storage.py still"
        " pools its connections as it did (or that pool_size is now configurable)"
    )
    home = _home(tmp_path)
    _instance_settings(home, stock)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with dg.DagsterInstance.get() as instance:  # creates the schema
        pass
    with dg.DagsterInstance.get() as instance:
        before = connections_to(pg_env["DAGSTER_PG_DB"])  # after the instance's start-up
        for n in range(40):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="connection_probe", partition=str(n))
            )
        opened = connections_to(pg_env["DAGSTER_PG_DB"]) - before
        stored = instance.fetch_materializations(dg.AssetKey("connection_probe"), 100)

    assert len(stored.records) == 40
    if fewest is not None:
        assert opened >= fewest, opened
    if most is not None:
        assert opened <= most, opened


def _instance_settings(home: Path, stock: bool) -> None:
    config = yaml.safe_load(PROFILE.read_text())
    if stock:  # the same database settings, under Dagster's stock Postgres storage
        config["storage"] = {"postgres": config["storage"]["custom"]["config"]}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize(("stock", "expected"), [(True, 6), (False, 1)], ids=["stock", "pooled"])
def test_an_instance_starts_on_an_existing_schema_with_one_connection(
    tmp_path: Path,
    pg_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stock: bool,
    expected: int,
) -> None:
    """Every run process and every sensor tick of the code server loads the instance; stock
    dagster-postgres asks whether its schema exists over two connections per storage."""
    home = _home(tmp_path)
    _instance_settings(home, stock)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get():  # creates the schema
        pass
    before = connections_to(pg_env["DAGSTER_PG_DB"])
    with dg.DagsterInstance.get() as instance:
        opened = connections_to(pg_env["DAGSTER_PG_DB"]) - before
        assert instance.get_run_records() == []  # and it works
    assert opened == expected


def test_an_empty_database_gets_dagster_s_schema(
    tmp_path: Path, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one question at start-up must not stop dagster-postgres creating its tables."""
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="schema_probe"))
        assert instance.fetch_materializations(dg.AssetKey("schema_probe"), 1).records
    tables = {t for (t,) in query(pg_env, "select tablename from pg_tables")}
    assert {"runs", "instance_info", "event_logs", "jobs", "alembic_version"} <= tables


@dg.asset(partitions_def=dg.StaticPartitionsDefinition([str(n) for n in range(10)]))
def connection_probe() -> int:
    return 1


def test_runs_open_no_connection_beyond_the_pools(
    tmp_path: Path, pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stores asset events, which makes dagster-postgres open a second connection while
    it holds the first; with a pool of one that second one was opened and closed for every
    materialization (8 connections for 5 runs, growing with every run)."""
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    with dg.DagsterInstance.get() as instance:
        before = connections_to(pg_env["DAGSTER_PG_DB"])
        for key in connection_probe.partitions_def.get_partition_keys():
            assert dg.materialize([connection_probe], instance=instance, partition_key=key).success
        opened = connections_to(pg_env["DAGSTER_PG_DB"]) - before
    assert opened <= POOL_SIZE * 3, opened  # run, event log and schedule storages' pools


probe_leas = dg.DynamicPartitionsDefinition(name="probe_leas")


@dg.asset(partitions_def=probe_leas)
def partition_probe() -> int:
    return 1


@dg.asset_check(asset=partition_probe)
def partition_probe_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@pytest.mark.parametrize(("stock", "most"), [(True, None), (False, 3)], ids=["stock", "pooled"])
def test_runs_ask_the_catalogue_about_a_table_once(
    tmp_path: Path,
    pg_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    stock: bool,
    most: int | None,
) -> None:
    """dagster-postgres asks whether a table exists before each dynamic-partition lookup and
    asset event (~130 catalogue queries a sync run); the pooled storage asks once a table."""
    home = _home(tmp_path)
    _instance_settings(home, stock)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        keys = [f"{n:06d}" for n in range(5)]
        instance.add_dynamic_partitions("probe_leas", keys)
        asked: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            if "pg_catalog.pg_class" in statement:
                asked.append(statement)

        engine = instance.event_log_storage._engine  # noqa: SLF001
        sqlalchemy.event.listen(engine, "before_cursor_execute", count)
        for key in keys:
            result = dg.materialize(
                [partition_probe, partition_probe_check], instance=instance, partition_key=key
            )
            assert result.success
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
        assert len(instance.fetch_materializations(partition_probe.key, 10).records) == 5

    if most is None:  # stock: the count grows with every run
        assert len(asked) >= 2 * len(keys), len(asked)
    else:
        assert len(asked) <= most, asked


def test_lea_syncs_on_a_postgres_instance(
    tmp_path: Path,
    pg_env: dict[str, str],
    sftp_server: EmbeddedSftpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The inbox sensor, the run and its asset checks, on the production profile's instance."""
    env = pipeline_env(
        tmp_path,
        sftp_server.host,
        sftp_server.port,
        sftp_server.username,
        sftp_server.host_key_line,
    )
    env["ROSTERING_SFTP_PASSWORD"] = sftp_server.password or ""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    with dg.DagsterInstance.get() as instance:
        pipeline = Pipeline(tmp_path, sftp_server.root, instance, env)
        pipeline.upload(LEA, day_one())
        runs = pipeline.sync()
        assert [r.success for r in runs] == [True]
        assert pipeline.check("applied_roster", "reconciliation").passed
        assert pipeline.sync() == []  # the sensor's cursor and run keys, kept in Postgres

    assert pipeline.query("select lea_id, status from ingest.uploads") == [(LEA, "applied")]
    assert pipeline.query("select count(*) from roster.students") == [(3,)]
    assert query(pg_env, "select status from runs") == [("SUCCESS",)]
    assert query(pg_env, "select partition from dynamic_partitions") == [(LEA,)]


@pytest.mark.daemon
@pytest.mark.parametrize("warehouse_backend", ["postgres"], indirect=True)
def test_daemon_syncs_leas_on_a_postgres_instance(
    pipeline: Pipeline, tmp_path: Path, pg_env: dict[str, str]
) -> None:
    """The daemon's sensor, queue and run monitoring, and run processes forked by the launcher,
    all on the pooled Postgres storage; the one-run-per-LEA and max-runs limits as configured.
    The warehouse is PostgreSQL too (a database of its own): the whole production profile, its
    runs writing their LEAs' rosters at the same time."""
    students = _put_uploads(pipeline, tmp_path, leas := _leas(5))
    env = {**pipeline.env, **pg_env, "ROSTERING_SENSOR_INTERVAL_SECONDS": "5"}
    with running_daemon(tmp_path / "dagster_home", env, template=PROFILE) as daemon:
        assert daemon.instance.get_ref().storage_data.class_name == "PooledPostgresStorage"
        daemon.wait_for(
            "5 finished runs",
            lambda: len([r for r in daemon.runs() if r.status in FAILED_OR_DONE]) >= 5,
            timeout=300,
            interval=2,
        )
        runs = daemon.runs()
        events = query(pg_env, "select count(*) from event_logs")[0][0]
        connections = connections_to(pg_env["DAGSTER_PG_DB"])
        assert not list((tmp_path / "dagster_home").glob("**/*.db"))  # nothing in SQLite
        assert not pipeline.warehouse.exists()  # nor in a DuckDB file

    assert sorted(r.tags["lea_id"] for r in runs) == leas
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    sync_runs = "select status, count(*) from runs where pipeline_name = 'sync_upload' group by 1"
    assert sorted(query(pg_env, sync_runs)) == [("SUCCESS", 5)]
    _assert_applied_exactly_once(pipeline, students)
    # Stock dagster-postgres connects once per query: 3,792 connections for 623 events here;
    # this profile's storage 233 (most of them a process's start-up).
    assert connections < events, (connections, events)
