"""The warehouse on PostgreSQL: the same tables of record, reached through the same functions.

The package's SQL is written once, in the dialect both engines share; a `PostgresConnection`
takes it as a DuckDB connection would (`?` parameters, `x in ?` with a list) and returns the
same shapes (`fetchone`, `fetchall`, `.pl()`). What differs lives here:

- frames readable in SQL (`register`): a temporary table filled by COPY (CSV written by
  polars: an empty string stays `""`, a null stays empty, as COPY reads them);
- bulk reads (`read_frame`): COPY out as CSV, read by polars with the same distinction;
- the diff itself still runs in an in-process DuckDB over the LEA's rows (roster.py);
- a process runs the schema's DDL only when the database's schema is at another version (a
  comment on the `ingest` schema), under an advisory lock (two processes creating a table at
  once would collide in PostgreSQL's catalogue);
- `transaction(conn, lea_id=...)` takes a per-LEA advisory lock for the transaction, so two
  runs of one LEA write one after the other while other LEAs' runs write at the same time;
- sessions plan no nested-loop joins (see `connect`).

The DSN carries no password (libpq reads PGPASSWORD or ~/.pgpass): a password in a
configuration file or on a command line shows in `ps` and in Dagster's UI.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Sequence
from typing import Any

import polars as pl
import psycopg2
import psycopg2.extensions
import psycopg2.extras

#: The key every process takes while it runs the schema's DDL.
SCHEMA_LOCK = 0x726F7374  # "rost"

#: PostgreSQL type OIDs -> the polars type a DuckDB result of that column would have.
_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    700: pl.Float32(),
    701: pl.Float64(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}

#: polars types -> the column types of a registered frame's temporary table.
_COLUMN_TYPES: dict[type[pl.DataType], str] = {
    pl.Boolean: "boolean",
    pl.Int8: "smallint",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.UInt8: "integer",
    pl.UInt16: "integer",
    pl.UInt32: "bigint",
    pl.UInt64: "numeric",
    pl.Float32: "real",
    pl.Float64: "double precision",
    pl.Date: "date",
}


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """The package's SQL for psycopg2: `?` -> `%s`, `x in ?` (a list) -> `x = any(%s)`,
    `x not in ?` -> `x <> all(%s)`, a literal `%` doubled."""
    sql = sql.replace("%", "%%")
    sql = re.sub(r"\bnot in \?", "<> all(?)", sql, flags=re.IGNORECASE)
    sql = re.sub(r"\bin \?", "= any(?)", sql, flags=re.IGNORECASE)
    return sql.replace("?", "%s")


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Result:
    """A statement's rows, as DuckDB's result gives them."""

    def __init__(self, cursor: psycopg2.extensions.cursor) -> None:
        self._cursor = cursor

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def pl(self) -> pl.DataFrame:
        description = self._cursor.description or ()
        schema = {column.name: _TYPES.get(column.type_code, pl.String()) for column in description}
        return pl.DataFrame(self._cursor.fetchall(), schema=schema, orient="row")


class PostgresConnection:
    """One psycopg2 connection in autocommit mode: `transaction` brackets the writes that
    belong together, as it does on DuckDB."""

    def __init__(self, raw: psycopg2.extensions.connection) -> None:
        self.raw = raw
        raw.autocommit = True
        # JSON columns come back as their text, as DuckDB returns them.
        psycopg2.extras.register_default_json(raw, loads=lambda text: text)
        psycopg2.extras.register_default_jsonb(raw, loads=lambda text: text)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Result:
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), list(params) if params else None)
        return Result(cursor)

    def register(self, name: str, frame: pl.DataFrame) -> None:
        """`frame` as the temporary table `name` of this session."""
        columns = ", ".join(
            f"{quoted(column)} {_column_type(dtype)}" for column, dtype in frame.schema.items()
        )
        with self.raw.cursor() as cursor:
            cursor.execute(f"create temporary table {quoted(name)} ({columns})")
            if frame.height:
                csv = frame.write_csv(include_header=False)  # ISO dates and times, with offset
                cursor.copy_expert(
                    f"copy {quoted(name)} from stdin with (format csv)", io.StringIO(csv)
                )
            if frame.height > 1_000:
                # Statistics, so a join hashes the frame rather than the LEA's rows (1M
                # students: a delete 10-20 % faster; benchmarks/bench_per_lea.py).
                cursor.execute(f"analyze {quoted(name)}")

    def copy_into(self, table: str, frame: pl.DataFrame) -> None:
        """Append `frame`'s rows to `table` (its columns by name) with one COPY: no
        temporary table, no second pass (a 1M-student LEA's apply writes ~0.5M rows)."""
        if not frame.height:
            return
        columns = ", ".join(quoted(column) for column in frame.columns)
        with self.raw.cursor() as cursor:
            cursor.copy_expert(
                f"copy {table} ({columns}) from stdin with (format csv)",
                io.StringIO(frame.write_csv(include_header=False)),
            )

    def unregister(self, name: str) -> None:
        with self.raw.cursor() as cursor:
            cursor.execute(f"drop table if exists {quoted(name)}")

    def read_frame(
        self, sql: str, params: Sequence[Any], dates: Sequence[str] = ()
    ) -> pl.DataFrame:
        """A query's rows as text columns (the `dates` as dates), read with COPY: a million
        rows in about a second, where fetching them as Python tuples takes several."""
        with self.raw.cursor() as cursor:
            query = cursor.mogrify(translate(sql), list(params)).decode()
            buffer = io.BytesIO()
            cursor.copy_expert(f"copy ({query}) to stdout with (format csv, header)", buffer)
        buffer.seek(0)
        frame = pl.read_csv(buffer, infer_schema=False)
        return frame.with_columns(pl.col(c).str.to_date() for c in dates)

    def close(self) -> None:
        self.raw.close()


def _column_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    return _COLUMN_TYPES.get(type(dtype), "text")


def connect(
    dsn: str, ddl: str, *, read_only: bool, lock_timeout_seconds: float
) -> PostgresConnection:
    """A session on the warehouse's database: UTC, read-only when asked, waiting at most
    `lock_timeout_seconds` for a lock another session holds."""
    raw = psycopg2.connect(
        dsn,
        application_name="rostering_pipeline",
        # No nested-loop joins: the warehouse joins whole LEAs' rows (diff writes, checks),
        # and right after a big apply the statistics do not know the LEA yet (autovacuum
        # analyses later), so the planner expects one row and loops: a 10k-student LEA's
        # dangling-reference check ran for minutes in the statewide benchmark. Hash joins
        # over the LEA's index are linear whatever the statistics say.
        options=(
            f"-c timezone=UTC -c lock_timeout={max(1, int(lock_timeout_seconds * 1000))}"
            " -c enable_nestloop=off"
        ),
    )
    conn = PostgresConnection(raw)
    try:
        # The tables exist before anyone reads them (a sensor may read before the first run).
        ensure_schema(conn, dsn, ddl)
        if read_only:
            conn.execute("set default_transaction_read_only = on")
    except BaseException:
        conn.close()
        raise
    return conn


_SCHEMA_READY: set[str] = set()


def ensure_schema(conn: PostgresConnection, dsn: str, ddl: str) -> None:
    """Run the DDL when the database's schema is not at this version yet, one process at a
    time; once per process and database at most.

    The version (the DDL's SHA-256) is the comment of the `ingest` schema, written in the
    DDL's transaction and read without a lock. Running the DDL when nothing changed is not
    free: `alter table ... add column if not exists` takes an ACCESS EXCLUSIVE lock on
    ingest.uploads and `create index if not exists` a SHARE lock on each roster table even
    when there is nothing to do, so every run process waited for every other run's open
    apply, and queued the next ones behind it (a 200-LEA morning: 139 ms mean for the alter,
    100 ms mean for the lock around it)."""
    if dsn in _SCHEMA_READY:
        return
    version = f"rostering schema {hashlib.sha256(ddl.encode()).hexdigest()}"
    current = conn.execute(
        "select obj_description(to_regnamespace('ingest'), 'pg_namespace')"
    ).fetchone()[0]
    if current != version:
        conn.execute("begin")
        try:
            conn.execute("select pg_advisory_xact_lock(?)", [SCHEMA_LOCK])
            conn.raw.cursor().execute(ddl)
            conn.raw.cursor().execute("comment on schema ingest is %s", [version])
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
    _SCHEMA_READY.add(dsn)


def lock_lea(conn: PostgresConnection, lea_id: str) -> None:
    """Until the transaction ends, no other transaction locking this LEA proceeds."""
    conn.execute("select pg_advisory_xact_lock(hashtext(?))", [f"roster:{lea_id}"])
