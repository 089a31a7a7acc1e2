"""The warehouse resource: one process at a time, waited for within a bound; frames in SQL."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from rostering_pipeline.defs.roster.sensors import blackout_release_sensor
from rostering_pipeline.lea_settings import LeaSettingsResource
from rostering_pipeline.upload_spec.files import UPLOAD_FILES, UploadFile
from rostering_pipeline.warehouse import WarehouseBusy, WarehouseResource, registered

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


@pytest.mark.parametrize("spec", UPLOAD_FILES, ids=lambda spec: spec.entity)
def test_each_entity_of_the_registry_has_a_roster_table_of_its_columns(
    tmp_path: Path, spec: UploadFile
) -> None:
    with WarehouseResource(path=str(tmp_path / "w.duckdb")).connect() as conn:
        columns = conn.execute(
            "select column_name, data_type, is_nullable from information_schema.columns"
            " where table_schema = 'roster' and table_name = ? order by ordinal_position",
            [spec.entity],
        ).fetchall()

    assert [c[0] for c in columns] == ["lea_id", *spec.columns, "upload_id"]
    assert {c[0] for c in columns if c[2] == "NO"} == {"lea_id", *spec.key, "upload_id"}
    assert {c[0] for c in columns if c[1] == "DATE"} == set(spec.dates)
    assert {c[1] for c in columns} <= {"VARCHAR", "DATE"}


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
