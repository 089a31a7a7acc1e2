"""How every process reaches the warehouse (the DuckDB file, or PostgreSQL), and how long it
waits for it.

DuckDB lets one process open a file at a time. Every step reaches the file through
`WarehouseResource.connect`, which waits (bounded) while another process holds it: that one
mechanism serialises access, for exactly as long as each connection is open. (A Dagster pool
around whole steps was tried: its slot stayed held while steps loaded inputs and logged, and
blocked steps poll for it at 1 s and slower, which capped a busy morning at one LEA every
~3.8 s; benchmarks/bench_orchestration.py.)

With `postgres_dsn` set the warehouse is a PostgreSQL database instead (postgres.py): many
processes, on many hosts, write at once; two runs of one LEA take turns on a per-LEA lock
inside their transactions. The DuckDB file stays the embedded default.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import polars as pl
import psycopg2

from ..places import DEFAULT_WAREHOUSE
from . import postgres
from .postgres import PostgresConnection
from .schema import DDL, POSTGRES_DDL

#: How frames reach DuckDB: with Arrow's classic strings (a copy), unless the query reads the
#: frame whole. DuckDB pushes join filters (IN lists) into Arrow scans, and pyarrow has no
#: `is_in` for polars' string views, so a join with a frame of views can fail, depending on
#: the plan DuckDB picks (DuckDB 1.5.6, pyarrow 26; test_warehouse).
CLASSIC_STRINGS = pl.CompatLevel.oldest()
STRING_VIEWS = pl.CompatLevel.newest()

#: Longest pause between attempts to open a warehouse another process holds.
MAX_LOCK_POLL_SECONDS = 0.25

#: What a connection to the warehouse is, for the functions of this package that take one.
Connection = duckdb.DuckDBPyConnection | PostgresConnection

#: Who is waiting for the file, and so how long they wait while another process holds it:
#: a run's step queues behind the other runs (the resource's `lock_timeout_seconds`); a
#: sensor tick stays short (a busy warehouse postpones its work to the next tick, and a
#: tick reading it must not delay every inbox's next look); the run-failure sensor sees
#: each failure once, so it waits longer to record it.
Waiter = Literal["run", "sensor_tick", "failure_sensor"]
SENSOR_WAIT_SECONDS: dict[Waiter, float] = {"sensor_tick": 0.5, "failure_sensor": 30.0}


class WarehouseBusy(Exception):
    """Another process held the warehouse for longer than its caller waits."""


#: What a call into the warehouse may raise that a caller doing best-effort bookkeeping (a
#: sensor) catches and tries again later: the file busy, missing tables, a database error.
WAREHOUSE_ERRORS: tuple[type[Exception], ...] = (WarehouseBusy, duckdb.Error, psycopg2.Error)


#: A value a database's error message quotes ("…" or '…'): PostgreSQL and DuckDB quote the
#: value that failed a cast or a constraint, and it may be a student's name or birth date.
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
VALUES_LEFT_OUT = " [values left out: they may be student data]"


def without_values(error: duckdb.Error | psycopg2.Error) -> Exception:
    """`error` as the same exception type, its message without the values it quotes, and
    without PostgreSQL's DETAIL and CONTEXT lines (the failing row, the COPY line's value):
    what a run's failure, its logs and an LEA's notice show. PostgreSQL's SQLSTATE and the
    table, column and constraint concerned stay, so an operator can still tell what failed."""
    if str(error).endswith(VALUES_LEFT_OUT):
        return error
    if isinstance(error, psycopg2.Error):
        diag = error.diag
        first = diag.message_primary or (str(error).strip().splitlines() or [""])[0]
        names = [
            f"{label} {value}"
            for label, value in (
                ("SQLSTATE", error.pgcode),
                ("table", diag.table_name),
                ("column", diag.column_name),
                ("constraint", diag.constraint_name),
            )
            if value
        ]
        message = _QUOTED.sub('"…"', first) + (f" ({', '.join(names)})" if names else "")
    else:
        message = _QUOTED.sub('"…"', str(error))
    return type(error)(message + VALUES_LEFT_OUT)


#: The warehouse of a deployment that does not set ROSTERING_WAREHOUSE: the demo's (places.py).
DEFAULT_PATH = str(DEFAULT_WAREHOUSE)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse holding the ingest, quality and roster schemas: the DuckDB file at
    `path`, or the PostgreSQL database `postgres_dsn` names (a libpq DSN without password)."""

    path: str = DEFAULT_PATH
    postgres_dsn: str | None = None
    lock_timeout_seconds: float = 600.0

    @property
    def backend(self) -> Literal["duckdb", "postgres"]:
        return "postgres" if self.postgres_dsn else "duckdb"

    @contextmanager
    def connect(self, *, read_only: bool = False, waiter: Waiter = "run") -> Iterator[Connection]:
        """Open the warehouse, waiting (bounded, as long as `waiter` waits) while another
        process holds DuckDB's lock; WarehouseBusy past that. A database error raised in the
        block leaves it without the values it quotes (`without_values`)."""
        with self._open(read_only, waiter) as conn:
            try:
                yield conn
            except (duckdb.Error, psycopg2.Error) as error:
                raise without_values(error) from None

    @contextmanager
    def _open(self, read_only: bool, waiter: Waiter) -> Iterator[Connection]:
        timeout = SENSOR_WAIT_SECONDS.get(waiter, self.lock_timeout_seconds)
        if self.postgres_dsn:
            dsn = self.postgres_dsn
            if isinstance(dsn, dg.EnvVar):  # outside a run, an EnvVar is not resolved for us
                dsn = dsn.get_value() or ""
            with self._connect_postgres(dsn, read_only, timeout) as conn:
                yield conn
            return
        path = Path(self.path)
        read_only = read_only and path.exists()
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        started = time.monotonic()
        delay = 0.02
        while True:
            try:
                conn = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                waited = time.monotonic() - started
                if waited > timeout:
                    raise WarehouseBusy(
                        f"The warehouse {path} was held by another process for {waited:.0f} s "
                        f"({error}). Nothing was written; the run can be re-executed once that "
                        "process finishes (dagster runs, or a DuckDB shell left open)."
                    ) from None
                # Short, jittered polls: a connection is held for one transaction, and
                # several runs waiting must not retry in lockstep.
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_LOCK_POLL_SECONDS)
        waited = time.monotonic() - started
        if waited > 2.0:
            dg.get_dagster_logger().info(
                f"waited {waited:.1f} s for the warehouse: another run was using it"
            )
        try:
            # Text comes back as Arrow string views, which polars takes without copying.
            conn.execute("set produce_arrow_string_view = true")
            # No vacuum at checkpoints: merging row groups after a big LEA's apply costs
            # about a second per million students; compact_roster does it nightly instead.
            conn.execute("set max_vacuum_tasks = 0")
            if not read_only:
                conn.execute(DDL)
                path.chmod(0o600)
            yield conn
        finally:
            conn.close()

    @staticmethod
    @contextmanager
    def _connect_postgres(dsn: str, read_only: bool, timeout: float) -> Iterator[Connection]:
        """A session of its own; a lock another session holds is waited for `timeout` at most
        (a sensor tick's short wait, a run's long one), then the statement fails."""
        conn = postgres.connect(
            dsn, DDL + POSTGRES_DDL, read_only=read_only, lock_timeout_seconds=timeout
        )
        try:
            yield conn
        finally:
            conn.close()


@contextmanager
def transaction(conn: Connection, *, lea_id: str | None = None) -> Iterator[None]:
    """All the block's writes, or none of them. With `lea_id`, no other transaction naming
    the same LEA runs meanwhile (on DuckDB the file's one writer already ensures it)."""
    conn.execute("begin transaction")
    try:
        if lea_id is not None and isinstance(conn, PostgresConnection):
            postgres.lock_lea(conn, lea_id)
        yield
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


@contextmanager
def registered(
    conn: Connection, name: str, frame: pl.DataFrame, *, read_whole: bool = False
) -> Iterator[None]:
    """`frame` readable in SQL as `name` for the block, through Arrow.

    `read_whole` promises that no filter can reach the frame's scan (an insert from it, or
    one side of a full outer join): its strings are then handed over as polars holds them,
    without a copy (at 1M students ~0.1 s and ~100 MB less)."""
    if isinstance(conn, PostgresConnection):
        conn.register(name, frame)
    else:
        level = STRING_VIEWS if read_whole else CLASSIC_STRINGS
        conn.register(name, frame.to_arrow(compat_level=level))
    try:
        yield
    finally:
        conn.unregister(name)
