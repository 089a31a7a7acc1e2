"""Dagster's PostgreSQL instance storage, keeping its connections open (deploy/postgres/).

dagster-postgres (0.29.27, with dagster 1.13.27) opens a new connection for every query
(SQLAlchemy's NullPool) in every process except the webserver: a run stores ~120 events, each
a connection set-up of 4.6–9.3 ms on a 2-core host, slower than SQLite. The webserver instead
calls the storages' own `optimize_for_webserver`, which rebuilds each engine with a pool of one
connection kept open (plus overflow for concurrent threads). Its size is not configurable in
dagster.yaml in this version (dagster-io/dagster#33935 asks for that), so this subclass does
the same thing in every process that loads the instance: the daemon, the code server and each
run. Everything else, the schema, the migrations, the config (`postgres_db` with `env:` fields),
is dagster-postgres's own.

Fenced: only this module knows; test_postgres_instance pins the dagster-postgres version it was
written for and shows the pooled storage makes far fewer connections than the stock one.
"""

from __future__ import annotations

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

#: Written against this dagster-postgres (a test fails when the lock moves on: read
#: `optimize_for_webserver` again, or drop this module once the pool is configurable).
DAGSTER_POSTGRES_VERSION = "0.29.27"
#: No statement timeout (the webserver uses 15 s; a run's queries must not be cut short).
STATEMENT_TIMEOUT_MS = 0
#: Reconnect after an hour, as the webserver does by default (survives server-side idle kills).
POOL_RECYCLE_SECONDS = 3600
#: Threads of one process (the daemon's) that need a connection at once beyond the pooled one
#: get a short-lived extra connection, up to this many (the webserver's default).
MAX_OVERFLOW = 20


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage whose run, event log and schedule storages each keep one
    connection open per process (dagster-postgres's `optimize_for_webserver` pool)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider=None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.optimize_for_webserver(
                statement_timeout=STATEMENT_TIMEOUT_MS,
                pool_recycle=POOL_RECYCLE_SECONDS,
                max_overflow=MAX_OVERFLOW,
            )

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:  # ty: ignore[invalid-method-override]
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
