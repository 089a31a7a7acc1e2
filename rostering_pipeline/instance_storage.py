"""Dagster's PostgreSQL instance storage, keeping its connections open (deploy/postgres/).

dagster-postgres (0.29.27, with dagster 1.13.27) opens a new connection for every query
(SQLAlchemy's NullPool) in every process except the webserver: a run stores ~120 events, each
a connection set-up of 4.6–9.3 ms on a 2-core host, slower than SQLite. The webserver instead
calls the storages' own `optimize_for_webserver`, which rebuilds each engine with a pool of one
connection kept open (plus overflow for concurrent threads). Its size is not configurable in
dagster.yaml in this version (dagster-io/dagster#33935 asks for that), so this subclass does
the same thing, with a pool of two, in every process that loads the instance: the daemon, the
code server (a new instance for every sensor tick) and each run. It also asks once, over one
connection, whether the schema exists, where the three storages ask over two connections each;
a statewide morning starts ~1,500 such processes and instances. And its event log storage
remembers which of its tables exist (stock asks the catalogue ~130 times a sync run).
Everything else, the schema, its creation when absent, the migrations, the config
(`postgres_db` with `env:` fields), is dagster-postgres's own.

Fenced: only this module knows; test_postgres_instance pins the dagster-postgres version it was
written for and counts the connections a start-up and a run's events open, and the
catalogue queries of runs.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
    retry_pg_connection_fn,
)

#: Written against this dagster-postgres (a test fails when the lock moves on: read
#: `optimize_for_webserver` and the storages' `__init__` again, or drop this module once the
#: pool is configurable).
DAGSTER_POSTGRES_VERSION = "0.29.27"
#: Connections each storage keeps open. Two, not the webserver's one: dagster-postgres opens a
#: second connection while holding the first (storing an asset event asks `has_table`, reading
#: runs asks `has_run_stats_index_cols`), and with a pool of one that second connection is an
#: overflow, opened and closed every time: ~11 new connections a run, each a backend start and
#: a SCRAM handshake on both sides.
POOL_SIZE = 2
#: Reconnect after an hour, as the webserver does by default (survives server-side idle kills).
POOL_RECYCLE_SECONDS = 3600
#: Threads of one process (the daemon's) that need a connection at once beyond the pooled ones
#: get a short-lived extra connection, up to this many (the webserver's default).
MAX_OVERFLOW = 20
#: The tables whose absence makes dagster-postgres's storages create their schema (each storage
#: checks its own with a connection of its own, two each: six a process, a run's start-up).
SCHEMA_TABLES = frozenset({"runs", "instance_info", "event_logs", "jobs"})


def _schema_exists(postgres_url: str, token_provider) -> bool:
    """Whether the instance's tables are there, asked over one connection."""
    engine = create_pg_engine(postgres_url, token_provider, poolclass=db.pool.NullPool)
    try:
        with retry_pg_connection_fn(engine.connect) as conn:
            return SCHEMA_TABLES <= set(db.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _remember_present_tables(storage) -> None:
    """The event log storage asks the catalogue whether a table exists before nearly every
    dynamic-partition lookup and asset-event write (`_check_partitions_table`,
    `supports_asset_checks`): ~130 catalogue queries a sync run. A table that exists stays for
    the process's life (Dagster's migrations only add tables), so a yes is remembered; a no is
    asked again."""
    asked = storage.has_table
    present: set[str] = set()

    def has_table(table_name: str) -> bool:
        if table_name not in present and asked(table_name):
            present.add(table_name)
        return table_name in present

    storage.has_table = has_table


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage whose run, event log and schedule storages each keep POOL_SIZE
    connections open per process, whose start-up asks once whether the schema exists
    (dagster-postgres's storages create it when it does not, as they do stock), and whose event
    log storage remembers which of its tables exist."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider=None,
    ) -> None:
        create = should_autocreate_tables and not _schema_exists(postgres_url, token_provider)
        super().__init__(postgres_url, create, inst_data, token_provider)
        self.should_autocreate_tables = should_autocreate_tables
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            # What `optimize_for_webserver` does, with a pool of POOL_SIZE instead of one. No
            # statement timeout (the webserver's is 15 s; a run's queries must not be cut short).
            storage._engine.dispose()
            storage._engine = create_pg_engine(
                postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                pool_recycle=POOL_RECYCLE_SECONDS,
                max_overflow=MAX_OVERFLOW,
            )
        _remember_present_tables(self._event_log_storage)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:  # ty: ignore[invalid-method-override]
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
