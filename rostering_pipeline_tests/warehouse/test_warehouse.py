"""The warehouse resource: one process at a time, waited for within a bound; frames in SQL."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import psycopg2
import psycopg2.errors
import pytest
from polars.testing import assert_frame_equal

from rostering_pipeline.decision import WHY, EntityDiff
from rostering_pipeline.defs.roster.sensors import blackout_release_sensor
from rostering_pipeline.lea_settings import LeaSettingsResource
from rostering_pipeline.roster.diff import diff_entity
from rostering_pipeline.upload_spec.files import BY_ENTITY, UPLOAD_FILES, UploadFile
from rostering_pipeline.upload_spec.reading import LINE
from rostering_pipeline.warehouse import (
    DDL,
    WarehouseBusy,
    WarehouseResource,
    postgres,
    registered,
    transaction,
)
from rostering_pipeline.warehouse.reports import latest_uploads
from rostering_pipeline.warehouse.roster import (
    differing_rows,
    other_leas_logins,
    write_entity_diff,
)
from rostering_pipeline.warehouse.schema import POSTGRES_DDL
from rostering_pipeline.warehouse.uploads import upload_count
from rostering_pipeline_tests.faults import messages_shown
from rostering_pipeline_tests.postgres import fresh_warehouse_dsn

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_connection_waits_while_another_process_holds_the_file(tmp_path: Path) -> None:
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect():
        pass
    holder = _hold(tmp_path / "warehouse.duckdb", 1.0)
    try:
        started = time.monotonic()
        with warehouse.connect() as conn:
            waited = time.monotonic() - started
            assert conn.execute("select count(*) from ingest.uploads").fetchone() == (0,)
    finally:
        holder.wait(timeout=30)
    assert 0.3 < waited < 10


def test_a_warehouse_held_past_the_bound_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with WarehouseResource(path=str(path)).connect():
        pass
    holder = _hold(path, 5.0)
    try:
        with pytest.raises(WarehouseBusy) as raised:
            with WarehouseResource(path=str(path), lock_timeout_seconds=0.5).connect():
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    message = str(raised.value)
    assert str(path) in message
    assert "held by another process" in message and "re-executed" in message


def test_a_sensor_tick_gives_up_on_a_busy_warehouse_within_its_short_wait(tmp_path: Path) -> None:
    # A tick waits a moment at most (the warehouse's one lock policy), never the seconds a run
    # applying a big LEA holds the file: the next tick tries again.
    path = tmp_path / "warehouse.duckdb"
    with WarehouseResource(path=str(path)).connect():
        pass
    settings = tmp_path / "lea_settings.toml"
    settings.write_text("[defaults]\n")
    resources = {
        "warehouse": WarehouseResource(path=str(path)),
        "lea_settings": LeaSettingsResource(path=str(settings)),
    }
    holder = _hold(path, 20.0)
    try:
        with (
            dg.DagsterInstance.ephemeral() as instance,
            dg.build_sensor_context(instance=instance, resources=resources) as context,
        ):
            started = time.monotonic()
            result = blackout_release_sensor(context)
            waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)

    assert isinstance(result, dg.SkipReason)
    assert "busy" in (result.skip_message or "")
    assert waited < 3


def test_a_registered_frame_can_be_filtered_by_a_join(tmp_path: Path) -> None:
    # DuckDB builds the join on the table and pushes an IN list of its keys into the scan of
    # the frame; with polars' string views pyarrow has no kernel for that and the query fails.
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("create table accounts (lea_id varchar, staff_id varchar)")
        conn.execute("insert into accounts values ('1', 'T1'), ('1', 'T2')")
        logins = pl.DataFrame({"staff_id": ["T1", "T8"], "username": ["a@x.org", "c@x.org"]})
        with registered(conn, "logins", logins):
            found = conn.execute(
                "select l.staff_id from logins l join accounts a on a.staff_id = l.staff_id"
                " where a.lea_id = ?",
                ["1"],
            ).fetchall()

    assert found == [("T1",)]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseResource]:
    """An empty warehouse on each backend: a DuckDB file, a fresh PostgreSQL database."""
    if request.param == "duckdb":
        yield WarehouseResource(path=str(tmp_path / "w.duckdb"))
        return
    with fresh_warehouse_dsn() as dsn:
        yield WarehouseResource(postgres_dsn=dsn)


@pytest.mark.parametrize("spec", UPLOAD_FILES, ids=lambda spec: spec.entity)
def test_each_entity_of_the_registry_has_a_roster_table_of_its_columns(
    warehouse: WarehouseResource, spec: UploadFile
) -> None:
    with warehouse.connect() as conn:
        columns = conn.execute(
            "select column_name, upper(data_type), is_nullable from information_schema.columns"
            " where table_schema = 'roster' and table_name = ? order by ordinal_position",
            [spec.entity],
        ).fetchall()

    assert [c[0] for c in columns] == ["lea_id", *spec.columns, "upload_id"]
    assert {c[0] for c in columns if c[2] == "NO"} == {"lea_id", *spec.key, "upload_id"}
    assert {c[0] for c in columns if c[1] == "DATE"} == set(spec.dates)
    assert {c[1] for c in columns} <= {"VARCHAR", "CHARACTER VARYING", "DATE"}


#: Values a CSV-based transfer could lose: an empty string beside a null, separators, quotes,
#: line breaks, a backslash-N, non-ASCII text; dates and times.
AWKWARD = pl.DataFrame(
    {
        "text": ["", None, "a,b", 'say "hi"', "two\nlines", "\\N", "Zoë Ñúñez 名"],
        "number": [0, None, -1, 2**40, 7, 8, 9],
        "day": [date(2016, 2, 29), None, date(1999, 12, 31)] + [date(2020, 1, 1)] * 4,
        "at": [datetime(2026, 9, 1, 12, 0, 0, 123456, tzinfo=UTC)] * 6 + [None],
    }
)


def test_a_registered_frame_reads_back_exactly(warehouse: WarehouseResource) -> None:
    with warehouse.connect() as conn, registered(conn, "awkward", AWKWARD):
        back = conn.execute("select * from awkward order by number nulls first").pl()
    back = back.with_columns(pl.col("at").dt.convert_time_zone("UTC"))  # DuckDB: "Etc/UTC"

    assert_frame_equal(back, AWKWARD.sort("number", nulls_last=False), check_dtypes=False)
    assert back.schema["day"] == pl.Date and isinstance(back.schema["at"], pl.Datetime)


def _all_columns(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """The entity's columns in order; those the test leaves out are null text."""
    missing = [pl.lit(None, pl.String).alias(c) for c in columns if c not in frame.columns]
    return frame.with_columns(missing).select(columns)


def test_the_diff_finds_the_same_rows_on_either_backend(warehouse: WarehouseResource) -> None:
    """differing_rows on the warehouse's applied rows: adds, updates (an empty string is not a
    null, a date changed) and drops, and nothing for an unchanged row."""
    spec = BY_ENTITY["students"]
    applied = _all_columns(
        pl.DataFrame(
            {
                "student_id": ["S1", "S2", "S3", "S4"],
                "first_name": ["A", "B", "C", "D"],
                "last_name": ["", None, "Z", "Y"],
                "birth_date": [date(2016, 3, 4), date(2016, 3, 5), None, date(2016, 3, 6)],
                "grade": ["04", "04", "05", "05"],
            }
        ),
        spec.columns,
    )
    upload = _all_columns(
        pl.DataFrame(
            {
                "student_id": ["S1", "S2", "S3", "S5"],
                "first_name": ["A", "B", "C", "E"],
                "last_name": ["", "", "Z", "X"],  # S2: a null became an empty string
                "birth_date": [date(2016, 3, 4), date(2016, 3, 5), date(2016, 1, 1), None],
                "grade": ["04", "04", "05", "06"],
            }
        ),
        spec.columns,
    ).with_columns(pl.Series(LINE, [2, 3, 4, 5]))
    keys = applied.select(spec.key)
    nothing = pl.DataFrame({"key": [], "change": [], "old_values": [], "new_values": [],
                            "source_line": []}, schema={"key": pl.String, "change": pl.String,
                            "old_values": pl.String, "new_values": pl.String,
                            "source_line": pl.Int64})  # fmt: skip
    now = datetime(2026, 9, 1, tzinfo=UTC)
    with warehouse.connect() as conn:
        with transaction(conn, lea_id="1"):
            write_entity_diff(conn, "1", "u1", EntityDiff("students", applied, keys.clear(),
                              nothing), now)  # fmt: skip
        current, snapshot = differing_rows(conn, "1", "students", upload)

    assert sorted(current["student_id"]) == ["S2", "S3", "S4"]
    assert sorted(snapshot["student_id"]) == ["S2", "S3", "S5"]
    assert_frame_equal(
        current.sort("student_id"),
        applied.filter(pl.col("student_id").is_in(["S2", "S3", "S4"])),
        check_dtypes=False,
    )
    assert_frame_equal(
        snapshot.sort("student_id"),
        upload.filter(pl.col("student_id").is_in(["S2", "S3", "S5"])),
        check_dtypes=False,
    )


def test_an_apply_deletes_only_the_rows_it_drops_or_replaces_on_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An LEA's first upload only adds, so nothing is deleted (no keys copied in, no delete
    statement); the next upload deletes its drop and its update, not its add; the roster
    ends up as the upload says."""
    spec = BY_ENTITY["students"]
    registered_keys: list[int] = []
    deletes: list[str] = []
    register, execute = postgres.PostgresConnection.register, postgres.PostgresConnection.execute

    def watch_register(self: postgres.PostgresConnection, name: str, frame: pl.DataFrame) -> None:
        if name == "changed_keys":
            registered_keys.append(frame.height)
        register(self, name, frame)

    def watch_execute(self: postgres.PostgresConnection, sql: str, params=None):  # noqa: ANN001, ANN202
        if sql.lstrip().lower().startswith("delete from roster."):
            deletes.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(postgres.PostgresConnection, "register", watch_register)
    monkeypatch.setattr(postgres.PostgresConnection, "execute", watch_execute)

    def rows(ids: list[str], grades: list[str]) -> pl.DataFrame:
        frame = pl.DataFrame({"student_id": ids, "first_name": ids, "grade": grades})
        return _all_columns(frame, spec.columns).with_columns(
            pl.col("birth_date").cast(pl.Date),
            pl.int_range(2, len(ids) + 2, dtype=pl.Int64).alias(LINE),
        )

    def apply(conn: postgres.PostgresConnection, upload_id: str, upload: pl.DataFrame) -> None:
        current, snapshot = differing_rows(conn, "1", "students", upload)
        keep = pl.DataFrame(schema={"student_id": pl.String, WHY: pl.String})
        diff = diff_entity("students", current, snapshot, keep)
        with transaction(conn, lea_id="1"):
            write_entity_diff(conn, "1", upload_id, diff, datetime(2026, 9, 1, tzinfo=UTC))

    with fresh_warehouse_dsn() as dsn, WarehouseResource(postgres_dsn=dsn).connect() as conn:
        apply(conn, "u1", rows(["S1", "S2", "S3"], ["04", "04", "04"]))
        assert (registered_keys, deletes) == ([], [])

        apply(conn, "u2", rows(["S1", "S2", "S4"], ["04", "05", "04"]))  # S2 up, S3 out, S4 in
        assert registered_keys == [2] and len(deletes) == 1
        roster = conn.execute(
            "select student_id, grade, upload_id from roster.students order by 1"
        ).fetchall()

    assert roster == [("S1", "04", "u1"), ("S2", "05", "u2"), ("S4", "04", "u2")]


def _calls_execute_or_imports_duckdb(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "duckdb" for a in node.names):
            found.append(f"{path.name}:{node.lineno} imports duckdb")
        elif isinstance(node, ast.ImportFrom) and node.module == "duckdb":
            found.append(f"{path.name}:{node.lineno} imports from duckdb")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "sql", "register")
        ):
            found.append(f"{path.name}:{node.lineno} calls .{node.func.attr}(")
    return found


def test_only_the_warehouse_package_reaches_duckdb() -> None:
    # The boundary a second backend implements: every statement against the warehouse is in
    # rostering_pipeline/warehouse/, so no other module talks to DuckDB.
    package = Path(__file__).resolve().parents[2] / "rostering_pipeline"
    outside = [
        finding
        for path in sorted(package.rglob("*.py"))
        if "warehouse" not in path.relative_to(package).parts
        for finding in _calls_execute_or_imports_duckdb(path)
    ]

    assert outside == []


def test_a_database_error_shows_no_value_it_failed_on(warehouse: WarehouseResource) -> None:
    """A cast that fails on a value (as a birth date would, had validation let it through)
    names the failure, never the value, in the error a run would show."""
    with pytest.raises((duckdb.Error, psycopg2.Error)) as failed:
        with warehouse.connect() as conn:
            conn.execute("select cast(? as date)", ["Zoë 2011-13-45"])

    shown = messages_shown(failed.value)
    assert "Zoë" not in shown and "2011-13-45" not in shown
    assert "date" in shown.lower() and "values left out" in shown
    if warehouse.backend == "postgres":
        assert "SQLSTATE 22007" in shown  # invalid_datetime_format: what failed stays told


def test_a_constraint_s_detail_never_shows_the_row_on_postgres() -> None:
    """PostgreSQL's DETAIL of a violated constraint quotes the row's values (here a login);
    the error a run would show names the constraint and table, not the values."""
    with fresh_warehouse_dsn() as dsn:
        warehouse = WarehouseResource(postgres_dsn=dsn)
        with pytest.raises(psycopg2.errors.ExclusionViolation) as failed:
            with warehouse.connect() as conn, transaction(conn):
                for lea in ("111111", "222222"):
                    conn.execute(
                        "insert into roster.accounts values (?, 'T1', 'ana.lopez@x.org',"
                        " 'active', now(), null, now())",
                        [lea],
                    )
                conn.execute("set constraints all immediate")

    shown = messages_shown(failed.value)
    assert "ana.lopez" not in shown
    assert "accounts_one_active_login" in shown and "table accounts" in shown


def test_a_read_before_any_write_finds_empty_tables(warehouse: WarehouseResource) -> None:
    """A sensor or the status board may read before the first run wrote anything."""
    with warehouse.connect(read_only=True) as conn:
        assert upload_count(conn) == 0
        assert latest_uploads(conn).is_empty()


def test_an_lea_wide_check_never_loops_over_an_lea_s_rows_on_postgres() -> None:
    """Right after a big apply, PostgreSQL's statistics still describe the tables as they
    were (autovacuum analyses later). A plan that believes a table is tiny loops over it once
    per row of the other side: the statewide benchmark saw the dangling-reference check of a
    10k-student LEA run for minutes. The warehouse's sessions join LEA-sized sets by hashing."""
    with fresh_warehouse_dsn() as dsn:
        warehouse = WarehouseResource(postgres_dsn=dsn)
        with warehouse.connect() as conn:
            # Statistics taken when other LEAs were in the tables (autovacuum's last look);
            # then a new LEA's rows arrive, which the statistics know nothing of.
            for lea, first, n in (("0", 0, 100_000), ("9", 0, 300), ("1", 0, 20_000)):
                if lea == "1":
                    conn.execute("analyze")
                conn.execute(
                    "insert into roster.students (lea_id, student_id, upload_id)"
                    f" select ?, 'S' || i, 'u' from generate_series({first}, {n - 1}) as i",
                    [lea],
                )
                conn.execute(
                    "insert into roster.enrollments (lea_id, class_id, student_id, upload_id)"
                    " select ?, 'C' || (i / 25), 'S' || i, 'u'"
                    f" from generate_series({first}, {n - 1}) as i",
                    [lea],
                )
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    "explain select count(*) from roster.enrollments r where r.lea_id = ?"
                    " and r.student_id is not null and not exists (select 1 from"
                    " roster.students t where t.lea_id = r.lea_id and t.student_id = r.student_id)",
                    ["1"],
                ).fetchall()
            )
    assert "Nested Loop" not in plan, plan


def test_a_new_process_does_not_wait_for_another_lea_s_open_apply_on_postgres() -> None:
    """Every run process connects anew. Its schema set-up must not queue behind the open
    transaction of another LEA's apply (an ALTER TABLE or CREATE INDEX on the tables that
    apply writes would, and would hold up every session after it)."""
    with fresh_warehouse_dsn() as dsn:
        with WarehouseResource(postgres_dsn=dsn).connect():
            pass  # the schema, as the first run process made it
        applying = psycopg2.connect(dsn)  # another LEA's apply, not committed yet
        try:
            with applying.cursor() as cur:
                cur.execute(
                    "insert into ingest.uploads (upload_id, lea_id, received_at, source_key,"
                    " fingerprint, files, status, registered_at) values ('u1', '111111', now(),"
                    " 'k', 'f', '[]', 'received', now())"
                )
                cur.execute(
                    "insert into roster.students (lea_id, student_id, upload_id)"
                    " values ('111111', 'S1', 'u1')"
                )
            postgres._SCHEMA_READY.discard(dsn)  # as in a new run process
            quick = WarehouseResource(postgres_dsn=dsn, lock_timeout_seconds=2)
            with quick.connect() as conn:  # LockNotAvailable after 2 s when it queues
                assert upload_count(conn) == 0  # the open apply is not visible yet
        finally:
            applying.close()


def test_a_changed_schema_is_applied_by_the_next_process_on_postgres() -> None:
    """The DDL runs again when it changed (a column added in a new version), not only on an
    empty database."""
    with fresh_warehouse_dsn() as dsn:
        with WarehouseResource(postgres_dsn=dsn).connect() as conn:
            postgres._SCHEMA_READY.discard(dsn)
            newer = DDL + POSTGRES_DDL + "alter table ingest.uploads add column probe varchar;"
            postgres.ensure_schema(conn, dsn, newer)
            assert conn.execute("select probe from ingest.uploads").fetchall() == []
            postgres._SCHEMA_READY.discard(dsn)
            # The same version: not run again (the bare "add column" would fail a second time).
            postgres.ensure_schema(conn, dsn, newer)


def test_link_tables_are_indexed_by_lea_alone_also_in_a_warehouse_made_before_on_postgres() -> None:
    """Enrollments and co-teachers (their key is their whole row) have an index on the LEA only
    (a day's adds no longer scatter over a key index); an existing warehouse whose link tables
    had the (LEA, key) index loses it when the next process runs the new schema. The other
    entities keep their (LEA, key) index for a record's story."""

    def indexes(conn: postgres.PostgresConnection) -> dict[str, str]:
        rows = conn.execute(
            "select indexname, indexdef from pg_indexes where schemaname = 'roster'"
        ).fetchall()
        return {name: definition.split(" USING btree ")[1] for name, definition in rows}

    with fresh_warehouse_dsn() as dsn:
        with WarehouseResource(postgres_dsn=dsn).connect() as conn:
            conn.execute("drop index roster.enrollments_by_lea")  # as the previous version made it
            conn.execute(
                "create index enrollments_lea on roster.enrollments (lea_id, class_id, student_id)"
            )
            conn.execute("comment on schema ingest is 'rostering schema (the previous version)'")
        postgres._SCHEMA_READY.discard(dsn)  # a new run process
        with WarehouseResource(postgres_dsn=dsn).connect() as conn:
            found = indexes(conn)

    assert found["enrollments_by_lea"] == "(lea_id)" and "enrollments_lea" not in found
    assert found["co_teachers_by_lea"] == "(lea_id)" and "co_teachers_lea" not in found
    assert found["students_lea"] == "(lea_id, student_id)"
    assert found["classes_lea"] == "(lea_id, class_id)"


def test_a_login_is_taken_only_by_another_lea_s_active_account(
    warehouse: WarehouseResource,
) -> None:
    """The logins a validation asks about: of those, the ones other LEAs' active accounts
    hold, whatever their case; not this LEA's own, not an inactive account's, and nothing
    it did not ask about."""
    accounts = [
        ("111111", "T1", "Ana.Lopez@X.org", "active"),
        ("111111", "T2", "bo.kim@x.org", "inactive"),
        ("222222", "T3", "cy.diaz@x.org", "active"),
        ("111111", "T4", "dee.ng@x.org", "active"),
    ]
    with warehouse.connect() as conn, transaction(conn):
        for account in accounts:
            conn.execute(
                "insert into roster.accounts values (?, ?, ?, ?, now(), null, now())", account
            )
    asked = ["ana.lopez@x.org", "bo.kim@x.org", "cy.diaz@x.org", "new.one@x.org"]
    with warehouse.connect(read_only=True) as conn:
        assert other_leas_logins(conn, "222222", asked) == {"ana.lopez@x.org"}
        assert other_leas_logins(conn, "333333", asked) == {"ana.lopez@x.org", "cy.diaz@x.org"}
        assert other_leas_logins(conn, "333333", []) == frozenset()
