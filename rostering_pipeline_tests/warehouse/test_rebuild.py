"""Disaster recovery (DESIGN invariant 8): after several LEAs synced over several days
through the real pipeline (adds, drops, a held upload an operator released, an account
deactivated and reactivated, rejected rows), the warehouse is deleted and `rostering
rebuild` makes it again from the archive alone: the same rosters, accounts and usernames,
change history, upload decisions and rejections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import time_machine

from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, DAY, DAY_ONE, Pipeline
from rostering_pipeline_tests.postgres import fresh_warehouse_dsn
from rostering_pipeline_tests.roster.test_apply_invariants import _upload
from rostering_pipeline_tests.uploads import day_one

A, B = "101912", "227901"
#: What a rebuild must give back, table by table. Columns that say when and by which run
#: a row was processed (registered_at, run_id, recorded_at) are the rebuild's own.
TABLES = {
    "ingest.uploads": "upload_id, lea_id, received_at, source_key, fingerprint,"
    " cast(files as varchar),"
    " status, reason, held_by, operator, decided_at",
    "ingest.decisions": "*",
    "quality.rejections": 'upload_id, lea_id, file, line, "column", rule, value, fix, level',
    "roster.campuses": "*",
    "roster.staff": "*",
    "roster.students": "*",
    "roster.classes": "*",
    "roster.enrollments": "*",
    "roster.co_teachers": "*",
    "roster.accounts": "*",
    "roster.changes": "*",
}


def _lea_b(staff_t2: bool, teacher_of_c2: str) -> dict[str, str]:
    files = {
        k: v.replace("101912", B).replace("@example.org", "@b.example.org")
        for k, v in day_one().items()
    }
    if not staff_t2:
        files["staff.csv"] = "\n".join(files["staff.csv"].splitlines()[:2]) + "\n"
    files["classes.csv"] = files["classes.csv"].replace(f"{B}002,Grade 7 Science,T2", f"{B}002,Grade 7 Science,{teacher_of_c2}")  # fmt: skip
    return files


def _snapshot(warehouse: WarehouseResource) -> dict[str, list[tuple]]:
    with warehouse.connect(read_only=True) as conn:
        return {
            t: sorted(conn.execute(f"select {c} from {t}").fetchall(), key=repr)
            for t, c in TABLES.items()
        }


def _rebuild(pipeline: Pipeline, *target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rostering_pipeline.cli", "rebuild", *target,
         "--archive", pipeline.env["ROSTERING_ARCHIVE"]],
        env=os.environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _sync_days(pipeline: Pipeline) -> None:
    pipeline.upload(A, _upload(100), day=1)
    pipeline.upload(B, _lea_b(True, "T2"), day=1)
    pipeline.sync()
    pipeline.upload(A, _upload(96), day=2)  # 4 drops: under the safeguard
    pipeline.upload(B, _lea_b(False, "T1"), day=2)  # T2 leaves: account deactivated
    pipeline.sync()
    pipeline.upload(A, _upload(60), day=3)  # 36 of 96 students: held
    assert [r.success for r in pipeline.sync()] == [True]  # held: a decision waiting, not a failure
    (held,) = pipeline.query("select upload_id from ingest.uploads where status = 'held'")[0]
    with time_machine.travel(DAY_ONE + 2 * DAY + 3600, tick=True):  # an operator, an hour on
        released = (
            pipeline.defs()
            .resolve_job_def("sync_upload")
            .execute_in_process(
                run_config={
                    "ops": {
                        "raw_upload": {"config": {"replay_upload_id": held}},
                        "roster_diff": {"config": {"held_upload": "release"}},
                    }
                },
                instance=pipeline.instance,
                partition_key=A,
                raise_on_error=False,
            )
        )
    assert released.success
    pipeline.upload(B, _lea_b(True, "T2"), day=4)  # T2 returns: the same account, reactivated
    bad = _upload(60)
    bad["students.csv"] = bad["students.csv"].replace(",04,", ",4th,", 1)  # a rejected row
    pipeline.upload(A, bad, day=5)
    pipeline.sync()


@BOTH_WAREHOUSES
def test_rebuild_from_the_archive_gives_back_the_lost_warehouse(pipeline: Pipeline) -> None:
    _sync_days(pipeline)
    lost = _snapshot(pipeline.warehouse_resource())
    assert [s for (s,) in pipeline.query("select status from ingest.uploads order by received_at")] == [  # fmt: skip
        "applied", "applied", "applied", "applied", "applied", "applied", "applied",
    ]  # fmt: skip
    assert pipeline.query(
        "select staff_id, status, deactivated_at is null from roster.accounts where lea_id = ?"
        " order by 1",
        [B],
    ) == [("T1", "active", True), ("T2", "active", True)]
    assert pipeline.query(
        "select count(*) from roster.changes where entity = 'students' and change = 'drop'"
    ) == [(40,)]
    assert lost["quality.rejections"]

    # The warehouse is lost; the archive is what is left. The rebuild makes a new one: the
    # same DuckDB file, or a new PostgreSQL database.
    if pipeline.backend == "duckdb":
        for path in pipeline.warehouse.parent.glob(pipeline.warehouse.name + "*"):
            path.unlink()
        rebuilt = _rebuild(pipeline, "--warehouse", str(pipeline.warehouse))
        again = _snapshot(pipeline.warehouse_resource())
    else:
        with fresh_warehouse_dsn() as new:
            rebuilt = _rebuild(pipeline, "--warehouse-dsn", new)
            again = _snapshot(WarehouseResource(postgres_dsn=new))

    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr[-2000:]
    assert "7 uploads, 8 decisions replayed" in rebuilt.stdout
    for table in TABLES:
        assert again[table] == lost[table], table


def test_rebuild_never_overwrites_a_warehouse(pipeline: Pipeline) -> None:
    pipeline.upload(A, day_one(), day=1)
    pipeline.sync()
    before = pipeline.warehouse.stat().st_mtime_ns

    refused = _rebuild(pipeline, "--warehouse", str(pipeline.warehouse))

    assert refused.returncode == 1
    assert "never overwrites one" in refused.stdout
    assert pipeline.warehouse.stat().st_mtime_ns == before


@pytest.mark.parametrize("warehouse_backend", ["postgres"], indirect=True)
def test_rebuild_never_writes_into_a_database_that_holds_uploads(pipeline: Pipeline) -> None:
    pipeline.upload(A, day_one(), day=1)
    pipeline.sync()
    before = _snapshot(pipeline.warehouse_resource())

    refused = _rebuild(pipeline, "--warehouse-dsn", pipeline.env["ROSTERING_WAREHOUSE_DSN"])

    assert refused.returncode == 1, refused.stdout + refused.stderr[-2000:]
    assert "already holds uploads" in refused.stdout and "createdb" in refused.stdout
    assert _snapshot(pipeline.warehouse_resource()) == before


def test_every_decision_is_kept_in_the_upload_manifest(pipeline: Pipeline) -> None:
    _sync_days(pipeline)
    (held,) = pipeline.query(
        "select upload_id from ingest.uploads where reason like 'an operator released%'"
    )[0]
    manifest = pipeline.root / "archive" / A / "manifests" / f"{held}.json"

    decisions = json.loads(manifest.read_text())["decisions"]

    assert [(d["status"], d["operator"], d["by"]) for d in decisions] == [
        ("held", None, "run"),
        ("applied", "release", "run"),
    ]
