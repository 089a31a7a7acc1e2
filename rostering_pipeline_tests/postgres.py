"""The throwaway PostgreSQL that `./run test` starts (scripts/start_postgres.sh), for tests.

`./run test` exports its DSN as ROSTERING_TEST_POSTGRES_DSN (a superuser on 127.0.0.1). Each
test takes a database of its own (`fresh_database`), dropped afterwards, and the DAGSTER_PG_*
variables that deploy/postgres/dagster.yaml reads to reach it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

DSN_ENV = "ROSTERING_TEST_POSTGRES_DSN"
#: The server's log, with a line for every connection (log_connections).
LOG_ENV = "ROSTERING_TEST_POSTGRES_LOG"


def postgres_dsn() -> str:
    """The DSN of the server `./run test` started; a missing one fails in CI, skips elsewhere."""
    dsn = os.environ.get(DSN_ENV, "")
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must run this test: ./run test starts PostgreSQL and exports {DSN_ENV}"
            )
        pytest.skip(f"PostgreSQL is not running (./run test starts it and exports {DSN_ENV})")
    return dsn


def _admin(dsn: str, sql: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE), as the server's superuser."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextmanager
def fresh_database(dsn: str) -> Iterator[dict[str, str]]:
    """A new, empty database on the server; yields the DAGSTER_PG_* variables naming it.
    Dropped on the way out, with any sessions still open in it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    _admin(dsn, f'create database "{name}"')
    url = urlsplit(dsn)
    try:
        yield {
            "DAGSTER_PG_HOST": url.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_DB": name,
            "DAGSTER_PG_USERNAME": url.username or "",
            "DAGSTER_PG_PASSWORD": url.password or "",
        }
    finally:
        _admin(dsn, f'drop database if exists "{name}" with (force)')


@contextmanager
def fresh_warehouse_dsn() -> Iterator[str]:
    """A new, empty database on the server for a warehouse; yields its DSN (what
    ROSTERING_WAREHOUSE_DSN holds). Dropped on the way out."""
    dsn = postgres_dsn()
    with fresh_database(dsn) as env:
        yield urlsplit(dsn)._replace(path="/" + env["DAGSTER_PG_DB"]).geturl()


def query(env: dict[str, str], sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one query in the database that `env` (DAGSTER_PG_*) names."""
    conn = psycopg2.connect(
        host=env["DAGSTER_PG_HOST"],
        port=int(env["DAGSTER_PG_PORT"]),
        dbname=env["DAGSTER_PG_DB"],
        user=env["DAGSTER_PG_USERNAME"],
        password=env["DAGSTER_PG_PASSWORD"],
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def connections_to(database: str) -> int:
    """Connections the server has accepted to `database` so far, from its log (it logs each
    one as it authorizes it)."""
    log = Path(os.environ[LOG_ENV]).read_text(errors="replace")
    return len(re.findall(rf"connection authorized: .*database={database}(?:\s|$)", log, re.M))
