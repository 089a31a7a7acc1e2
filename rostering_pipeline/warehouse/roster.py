"""The roster's tables of record (roster.*): the LEA's applied rows, their change log and the
staff's accounts, read and written in bulk through Arrow.

Table and column names come from the upload spec (`BY_ENTITY`) only; values always travel as
parameters or registered frames. Writers run inside the caller's `transaction`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import polars as pl
import psycopg2.errors

from ..upload_spec.files import BY_ENTITY, ENTITIES
from ..upload_spec.integrity import REFERENCES
from ..upload_spec.reading import LINE
from .connection import Connection, registered
from .postgres import PostgresConnection

if TYPE_CHECKING:
    from ..decision import EntityDiff


def differing_rows(
    conn: Connection, lea_id: str, entity: str, table: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The applied rows and the upload's rows (with `_line`) of one entity that differ.

    DuckDB full-joins the two on the entity's key and keeps the pairs that differ in any
    column (a null equals a null) and the rows with no partner: drops and the old side of
    updates in the first frame, adds and the new side of updates in the second. A row
    unchanged on both sides is in neither, so diffing these frames gives exactly the
    changes a diff of the whole roster would, without bringing an LEA's unchanged millions
    of rows out of DuckDB.

    On PostgreSQL the LEA's rows are read out (COPY) and the same join runs in an in-process
    DuckDB: PostgreSQL sends one LEA's rows, DuckDB does the diff."""
    spec = BY_ENTITY[entity]
    columns, first = spec.columns, spec.key[0]
    applied = f"select {', '.join(columns)} from roster.{entity} where lea_id = ?"
    if isinstance(conn, PostgresConnection):
        rows = conn.read_frame(applied, [lea_id], dates=[c for c in columns if c in spec.dates])
        engine = _engine()
        with registered(engine, "_applied", rows, read_whole=True):
            found = _differing(engine, spec.entity, table, "_applied", [])
    else:
        found = _differing(conn, spec.entity, table, f"({applied})", [lea_id])
    current = found.filter(pl.col(f"r.{first}").is_not_null()).select(
        pl.col(f"r.{c}").alias(c) for c in columns
    )
    snapshot = found.filter(pl.col(f"s.{first}").is_not_null()).select(
        *(pl.col(f"s.{c}").alias(c) for c in columns), LINE
    )
    return current, snapshot


_ENGINES = threading.local()


def _engine() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB for diffing rows read from PostgreSQL: opened once, as
    opening one costs ~10 ms and a sync diffs six entities twice (the plan, reconciliation)."""
    engine = getattr(_ENGINES, "engine", None)
    if engine is None:
        engine = _ENGINES.engine = duckdb.connect()
    return engine


def _differing(
    conn: duckdb.DuckDBPyConnection, entity: str, table: pl.DataFrame, applied: str, params: list
) -> pl.DataFrame:
    """The pairs of applied rows (`applied`, a table or subquery) and upload rows that differ,
    side by side (`r.<column>`, `s.<column>`)."""
    spec = BY_ENTITY[entity]
    columns, first = spec.columns, spec.key[0]
    on = " and ".join(f"r.{k} = s.{k}" for k in spec.key)
    differ = [f"r.{c} is distinct from s.{c}" for c in columns if c not in spec.key]
    pairs = ", ".join([f'r.{c} as "r.{c}", s.{c} as "s.{c}"' for c in columns] + [f"s.{LINE}"])
    with registered(conn, "_snapshot", table.select(*columns, LINE), read_whole=True):
        return conn.execute(
            f"select {pairs} from {applied} r full join _snapshot s on {on}"
            f" where r.{first} is null or s.{first} is null" + "".join(f" or {d}" for d in differ),
            params,
        ).pl()


def applied_counts(conn: Connection, lea_id: str) -> dict[str, int]:
    """How many rows of each entity the LEA has applied."""
    return {
        entity: conn.execute(
            f"select count(*) from roster.{entity} where lea_id = ?", [lea_id]
        ).fetchone()[0]
        for entity in ENTITIES
    }


def write_entity_diff(
    conn: Connection,
    lea_id: str,
    upload_id: str,
    diff: EntityDiff,
    applied_at: datetime,
) -> None:
    """Replace changed rows, insert new ones, delete drops, and log every change.

    Runs inside the caller's transaction; table and column names come from the spec only.
    Only drops and the rows updates replace are deleted, not adds: the plan found an add's key
    absent from the roster of the LEA's last applied upload, which apply_upload checks under
    this transaction's lock (planning again if another was applied since), and only applies
    write these tables. So an LEA's first upload deletes nothing (the statewide benchmark's
    first morning copied 3.7 M keys in to delete none), and a day's adds do not enlarge the
    delete's join (benchmarks/bench_per_lea.py).
    """
    spec = BY_ENTITY[diff.entity]
    table = f"roster.{diff.entity}"
    replaced = diff.rows if diff.replaced is None else diff.replaced
    keys = pl.concat([diff.drops.select(spec.key), replaced.select(spec.key)])
    if keys.height:
        match = " and ".join(f"t.{k} = k.{k}" for k in spec.key)
        with registered(conn, "changed_keys", keys):
            conn.execute(
                f"delete from {table} t using changed_keys k where t.lea_id = ? and {match}",
                [lea_id],
            )
    if isinstance(conn, PostgresConnection):  # straight into the tables, one COPY each
        conn.copy_into(
            table,
            diff.rows.select(
                pl.lit(lea_id).alias("lea_id"), *spec.columns, pl.lit(upload_id).alias("upload_id")
            ),
        )
        conn.copy_into(
            "roster.changes",
            diff.changes.select(
                pl.lit(upload_id).alias("upload_id"),
                pl.lit(lea_id).alias("lea_id"),
                pl.lit(diff.entity).alias("entity"),
                pl.all(),  # key, change, old_values, new_values, source_line
                pl.lit(applied_at).alias("applied_at"),
            ),
        )
        return
    if diff.rows.height:
        columns = ", ".join(spec.columns)
        with registered(conn, "new_rows", diff.rows.select(spec.columns), read_whole=True):
            conn.execute(
                f"insert into {table} (lea_id, {columns}, upload_id) "
                f"select ?, {columns}, ? from new_rows",
                [lea_id, upload_id],
            )
    if diff.changes.height:
        with registered(conn, "new_changes", diff.changes, read_whole=True):
            conn.execute(
                "insert into roster.changes (upload_id, lea_id, entity, key, change,"
                " old_values, new_values, source_line, applied_at) select ?, ?, ?, key, change,"
                " cast(old_values as json), cast(new_values as json), source_line, ?"
                " from new_changes",
                [upload_id, lea_id, diff.entity, applied_at],
            )


class LoginTaken(RuntimeError):
    """A login the upload gives a staff member became another LEA's after the upload was
    validated (the two LEAs' runs overlapped); the apply is refused, so no two LEAs ever
    share an account."""


def write_accounts(
    conn: Connection, lea_id: str, upload_id: str, staff: EntityDiff, now: datetime
) -> dict[str, int]:
    """One login per staff member: created or reactivated on add, renamed on an email change,
    deactivated (never deleted) on drop.

    Validation rejects a staff row whose email is another LEA's login, but it reads those
    logins before this transaction: a login another LEA's run created since raises
    `LoginTaken` here, and the caller's transaction rolls back."""
    counts = {"created": 0, "reactivated": 0, "renamed": 0, "deactivated": 0, "released": 0}
    if staff.rows.height:
        logins = staff.rows.select("staff_id", pl.col("email").str.to_lowercase().alias("username"))
        with registered(conn, "logins", logins):
            taken = conn.execute(
                "select l.staff_id, a.lea_id from logins l join roster.accounts a"
                " on lower(a.username) = l.username where a.lea_id <> ? and a.status = 'active'"
                " order by 1, 2",
                [lea_id],
            ).fetchall()
            if taken:
                raise LoginTaken(
                    f"LEA {lea_id}: the email of staff_id "
                    + ", ".join(
                        f"{staff_id} is the login of an account of LEA {other}"
                        for staff_id, other in taken
                    )
                    + ", created after this upload was validated. Nothing was applied: the"
                    " upload's next run validates it again, rejects those rows and reports"
                    " them to the LEA (Dagster's run retries start that run; past them an"
                    " operator re-executes it)."
                )
            counts["released"] = _release_inactive_logins(conn, lea_id, upload_id, now)
            counts["reactivated"] = conn.execute(
                "select count(*) from roster.accounts a join logins l using (staff_id)"
                " where a.lea_id = ? and a.status = 'inactive'",
                [lea_id],
            ).fetchone()[0]
            counts["renamed"] = conn.execute(
                "select count(*) from roster.accounts a join logins l using (staff_id)"
                " where a.lea_id = ? and a.username <> l.username",
                [lea_id],
            ).fetchone()[0]
            conn.execute(
                "update roster.accounts a set username = l.username, status = 'active',"
                " deactivated_at = null, updated_at = ? from logins l"
                " where a.lea_id = ? and a.staff_id = l.staff_id",
                [now, lea_id],
            )
            counts["created"] = len(
                conn.execute(
                    "insert into roster.accounts select ?, l.staff_id, l.username, 'active', ?,"
                    " null, ? from logins l where l.staff_id not in"
                    " (select staff_id from roster.accounts where lea_id = ?) returning staff_id",
                    [lea_id, now, now, lea_id],
                ).fetchall()
            )
    if staff.drops.height:
        with registered(conn, "gone", staff.drops):
            counts["deactivated"] = len(
                conn.execute(
                    "update roster.accounts a set status = 'inactive', deactivated_at = ?,"
                    " updated_at = ? from gone g where a.lea_id = ? and a.staff_id = g.staff_id"
                    " and a.status = 'active' returning a.staff_id",
                    [now, now, lea_id],
                ).fetchall()
            )
    if isinstance(conn, PostgresConnection) and staff.rows.height:
        _check_logins_now(conn, lea_id)
    return counts


def _check_logins_now(conn: PostgresConnection, lea_id: str) -> None:
    """PostgreSQL's check of one active account per login, now rather than at commit: a login
    another LEA's transaction took meanwhile (committed, or committing: the check waits for it)
    refuses this apply as `LoginTaken`."""
    try:
        conn.execute("set constraints roster.accounts_one_active_login immediate")
    except psycopg2.errors.ExclusionViolation:  # its DETAIL names the login: not shown
        raise LoginTaken(
            f"LEA {lea_id}: the email of a staff member became the login of another LEA's"
            " active account while this upload was applied (the two LEAs' runs overlapped)."
            " Nothing was applied: the upload's next run validates it again, rejects those rows"
            " and reports them to the LEA (Dagster's run retries start that run; past them an"
            " operator re-executes it)."
        ) from None  # the error's DETAIL (the login) would travel with the run's failure


def _release_inactive_logins(conn: Connection, lea_id: str, upload_id: str, now: datetime) -> int:
    """Logins this upload gives its staff (the registered `logins`) that an inactive account
    of another LEA holds pass to this LEA: the old account stays inactive with its history
    under a released username, and both LEAs' change logs say so (entity `accounts`)."""
    moved = conn.execute(
        "select a.lea_id, a.staff_id, a.username, l.staff_id from logins l join roster.accounts a"
        " on lower(a.username) = l.username where a.lea_id <> ? and a.status = 'inactive'"
        " order by 1, 2",
        [lea_id],
    ).fetchall()
    for old_lea, old_staff, username, new_staff in moved:
        released = f"{username} (released {now:%Y-%m-%d} to LEA {lea_id})"
        conn.execute(
            "update roster.accounts set username = ?, updated_at = ? where lea_id = ?"
            " and staff_id = ?",
            [released, now, old_lea, old_staff],
        )
        for lea, staff, old, new in (
            (old_lea, old_staff, {"username": username}, {"username": released}),
            (lea_id, new_staff, {"login_of": f"LEA {old_lea} staff_id {old_staff} (inactive)"},
             {"username": username}),
        ):  # fmt: skip
            conn.execute(
                "insert into roster.changes (upload_id, lea_id, entity, key, change, old_values,"
                " new_values, source_line, applied_at) values (?, ?, 'accounts', ?, 'update',"
                " ?, ?, null, ?)",
                [upload_id, lea, staff, json.dumps(old), json.dumps(new), now],
            )
    return len(moved)


def other_leas_logins(conn: Connection, lea_id: str, among: Iterable[str]) -> frozenset[str]:
    """Which of `among` (lower-cased logins) other LEAs' active accounts hold (an inactive
    account's login passes to the LEA that lists it now). Asks for the upload's own logins
    only: reading every other LEA's logins grew with the state (36k rows a run after 200 LEAs,
    ~400k for the whole state), and on PostgreSQL the one-active-login index answers this."""
    wanted = sorted({login for login in among if login})
    if not wanted:
        return frozenset()
    rows = conn.execute(
        "select lower(username) from roster.accounts"
        " where lower(username) in ? and lea_id <> ? and status = 'active'",
        [wanted, lea_id],
    ).fetchall()
    return frozenset(username for (username,) in rows)


def dangling_counts(conn: Connection, lea_id: str) -> dict[str, int]:
    """Per reference (`entity.column`), the LEA's applied rows pointing at a row of the same
    LEA that is not in the roster; references with none are left out."""
    counts = {}
    for ref in REFERENCES:
        n = conn.execute(
            f"select count(*) from roster.{ref.entity} r where r.lea_id = ?"
            f" and r.{ref.column} is not null and not exists"
            f" (select 1 from roster.{ref.target} t where t.lea_id = r.lea_id"
            f" and t.{ref.target_column} = r.{ref.column})",
            [lea_id],
        ).fetchone()[0]
        if n:
            counts[f"{ref.entity}.{ref.column}"] = n
    return counts
