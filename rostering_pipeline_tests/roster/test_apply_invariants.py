"""DESIGN.md's invariants, each attacked: safeguard, accounts, history, reconciliation,
ordering and crashes in the middle of an apply."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from rostering_pipeline.defs.operations.maintenance import warehouse_maintenance
from rostering_pipeline.warehouse import WarehouseResource
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.fault_points import KILLED, fail_at
from rostering_pipeline_tests.roster_history import roster_as_of
from rostering_pipeline_tests.uploads import CAMPUSES, CLASSES, STAFF, day_one, day_two

LEA = "101912"
HEADER = "student_id,first_name,last_name,birth_date,grade,campus_id\n"


def _students(n: int) -> str:
    return HEADER + "".join(
        f"S{i},Kid,Number{i},2016-03-04,04,101912001\n" for i in range(1, n + 1)
    )


def _upload(n_students: int, enrolled: int | None = None) -> dict[str, str]:
    enrolled = n_students if enrolled is None else enrolled
    return {
        "campuses.csv": CAMPUSES,
        "staff.csv": STAFF,
        "students.csv": _students(n_students),
        "classes.csv": CLASSES,
        "enrollments.csv": "class_id,student_id\n"
        + "".join(f"C1,S{i}\n" for i in range(1, enrolled + 1)),
    }


def _statuses(pipeline: Pipeline) -> list[tuple[str, str]]:
    return pipeline.query("select upload_id, status from ingest.uploads order by received_at")


def _materialize(pipeline: Pipeline, run_config: dict) -> dg.ExecuteInProcessResult:
    job = pipeline.defs().resolve_job_def("sync_upload")
    return job.execute_in_process(
        run_config=run_config, instance=pipeline.instance, partition_key=LEA, raise_on_error=False
    )


@BOTH_WAREHOUSES
def test_mass_drop_is_held_then_released_by_an_operator(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _upload(60), day=2)

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]  # a hold waits for a person: no failure
    held_id, status = _statuses(pipeline)[-1]
    assert status == "held"
    safeguard = pipeline.check("roster_diff", "mass_drop_safeguard")
    assert not safeguard.passed and safeguard.severity == dg.AssetCheckSeverity.WARN
    assert safeguard.metadata["upload_id"].value == held_id
    assert safeguard.metadata["drops_by_entity"].value["students"] == 40
    assert safeguard.metadata["threshold_by_entity"].value["students"] == "over 10% and over 5"
    assert held_id in safeguard.metadata["release"].value
    assert not pipeline.check("applied_roster", "latest_upload_applied").passed
    assert pipeline.query("select count(*) from roster.students") == [(100,)]
    reason = pipeline.query("select reason from ingest.uploads where upload_id = ?", [held_id])
    assert "40 of 100 students" in reason[0][0]
    report = [t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_")][-1]
    assert "Held for review" in report and "40 of 100 students" in report

    released = _materialize(
        pipeline,
        {
            "ops": {
                "raw_upload": {"config": {"replay_upload_id": held_id}},
                "roster_diff": {"config": {"held_upload": "release"}},
            }
        },
    )

    assert released.success
    assert _statuses(pipeline)[-1] == (held_id, "applied")
    assert pipeline.query("select count(*) from roster.students") == [(60,)]
    assert pipeline.query(
        "select count(*) from roster.changes where upload_id = ? and change = 'drop'"
        " and entity = 'students'",
        [held_id],
    ) == [(40,)]


@BOTH_WAREHOUSES
def test_held_upload_rejected_by_an_operator_changes_nothing(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, _upload(100), day=1)
    pipeline.sync()
    pipeline.upload(LEA, _upload(60), day=2)
    pipeline.sync()
    held_id = _statuses(pipeline)[-1][0]

    result = _materialize(
        pipeline,
        {
            "ops": {
                "raw_upload": {"config": {"replay_upload_id": held_id}},
                "roster_diff": {"config": {"held_upload": "reject"}},
            }
        },
    )

    assert result.success
    assert _statuses(pipeline)[-1] == (held_id, "rejected")
    assert pipeline.query("select count(*) from roster.students") == [(100,)]


@BOTH_WAREHOUSES
def test_small_lea_may_drop_a_student(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)  # drops 1 of 3 students: 33 %, but only one

    assert [r.success for r in pipeline.sync()] == [True]
    assert _statuses(pipeline)[-1][1] == "applied"


@BOTH_WAREHOUSES
def test_accounts_deactivate_reactivate_and_follow_email_changes(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    created = pipeline.query("select created_at from roster.accounts where staff_id = 'T2'")
    without_t2 = day_one()
    without_t2["staff.csv"] = STAFF.replace("T2,Ben,Cole,ben.cole@example.org,101912002\n", "")
    without_t2["classes.csv"] = CLASSES.replace("C2,101912002,Grade 7 Science,T2\n", "")
    without_t2["enrollments.csv"] = "class_id,student_id\nC1,S1\nC1,S2\n"
    pipeline.upload(LEA, without_t2, day=2)
    pipeline.sync()

    assert pipeline.query(
        "select status, deactivated_at is not null from roster.accounts where staff_id = 'T2'"
    ) == [("inactive", True)]

    back = day_one()
    back["staff.csv"] = STAFF.replace("ana.reyes@example.org", "Ana.Reyes-Lopez@example.org")
    pipeline.upload(LEA, back, day=3)
    pipeline.sync()

    assert pipeline.query(
        "select staff_id, username, status, deactivated_at from roster.accounts order by 1"
    ) == [
        ("T1", "ana.reyes-lopez@example.org", "active", None),
        ("T2", "ben.cole@example.org", "active", None),
    ]
    assert pipeline.query("select created_at from roster.accounts where staff_id = 'T2'") == created
    assert pipeline.query("select count(*) from roster.accounts") == [(2,)]


@BOTH_WAREHOUSES
def test_roster_after_any_upload_can_be_rebuilt(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    pipeline.sync()
    first, second = (u for u, _ in _statuses(pipeline))

    with pipeline.warehouse_resource().connect(read_only=True) as conn:
        after_first = roster_as_of(conn, LEA, first)
        after_second = roster_as_of(conn, LEA, second)
        now = conn.execute(
            "select student_id, grade, cast(birth_date as varchar) as birth_date"
            " from roster.students where lea_id = ? order by 1",
            [LEA],
        ).pl()

    assert after_first["students"].select("student_id", "grade").rows() == [
        ("S1", "04"),
        ("S2", "04"),
        ("S3", "07"),
    ]
    assert after_first["enrollments"].height == 3
    assert after_second["students"].select(now.columns).rows() == now.rows()
    assert after_second["enrollments"].select("class_id", "student_id").rows() == [
        ("C1", "S1"),
        ("C1", "S4"),
        ("C2", "S3"),
    ]


@BOTH_WAREHOUSES
def test_reconciliation_catches_a_row_altered_behind_the_pipeline(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.execute("update roster.students set grade = '09' where student_id = 'S2'")
    pipeline.upload(LEA, day_one(), day=2)  # the same files again: nothing to apply

    runs = pipeline.sync()

    evaluation = pipeline.check("applied_roster", "reconciliation")
    assert [r.success for r in runs] == [True]
    assert evaluation.passed is False
    assert evaluation.metadata["differing_keys"].value == {"students": ["S2"]}


@BOTH_WAREHOUSES
def test_a_row_altered_behind_the_pipeline_is_restored_by_the_next_upload(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.execute("update roster.students set grade = '09' where student_id = 'S2'")
    files = day_one()
    files["students.csv"] += "S4,Eli,Park,2016-09-10,04,101912001\n"
    pipeline.upload(LEA, files, day=2)  # not the same files: its diff is computed

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.check("applied_roster", "reconciliation").passed
    assert pipeline.query("select student_id, grade from roster.students order by 1") == [
        ("S1", "04"),
        ("S2", "04"),
        ("S3", "07"),
        ("S4", "04"),
    ]
    assert pipeline.query(
        "select key, old_values, new_values from roster.changes where change = 'update'"
    ) == [("S2", '{"grade":"09"}', '{"grade":"04"}')]


@BOTH_WAREHOUSES
def test_older_upload_never_overwrites_a_newer_one(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    with pytest.MonkeyPatch.context() as faulty:
        fail_at(faulty, "apply.begin:raise")
        [failed] = pipeline.sync()
    assert not failed.success  # received on day 1, not applied
    pipeline.upload(LEA, day_two(), day=2)

    runs = pipeline.sync()  # day 2's upload
    runs.append(pipeline.reexecute(failed.run_id))  # then day 1's, re-executed

    assert [r.success for r in runs] == [True, True]
    assert [s for _, s in _statuses(pipeline)] == ["superseded", "applied"]
    assert pipeline.query("select student_id from roster.students order by 1") == [
        ("S1",),
        ("S3",),
        ("S4",),
    ]


@BOTH_WAREHOUSES
@pytest.mark.parametrize("point", ["apply.begin", "apply.mid"])
def test_crash_during_apply_keeps_roster_and_retry_applies_once(
    pipeline: Pipeline, tmp_path: Path, point: str
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    before = pipeline.query("select * from roster.students order by student_id")
    pipeline.upload(LEA, day_two(), day=2)
    home = tmp_path / "crash_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    crashed = subprocess.run(
        [sys.executable, "-m", "rostering_pipeline_tests.fault_points", f"{point}:kill", "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert crashed.returncode == KILLED, crashed.stderr[-2000:]
    assert pipeline.query("select * from roster.students order by student_id") == before
    assert [s for _, s in _statuses(pipeline)] == ["applied", "received"]
    assert pipeline.inbox(LEA) == []  # archived and moved: the retry replays the archive

    retried = _materialize(pipeline, {})

    assert retried.success
    assert [s for _, s in _statuses(pipeline)] == ["applied", "applied"]
    second = _statuses(pipeline)[-1][0]
    changes = pipeline.query(
        "select entity, key, change from roster.changes where upload_id = ? order by 1, 2",
        [second],
    )
    assert changes == [
        ("enrollments", "C1|S2", "drop"),
        ("enrollments", "C1|S4", "add"),
        ("students", "S2", "drop"),
        ("students", "S3", "update"),
        ("students", "S4", "add"),
    ]
    assert _materialize(pipeline, {}).success  # a further retry changes nothing
    assert pipeline.query("select count(*) from roster.changes where upload_id = ?", [second]) == [
        (len(changes),)
    ]
    assert pl.DataFrame(
        pipeline.query("select student_id from roster.students order by 1"), orient="row"
    ).to_series().to_list() == ["S1", "S3", "S4"]


@BOTH_WAREHOUSES
def test_a_sync_killed_mid_apply_is_applied_once_by_the_next_sync_and_reported(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    home = tmp_path / "cli_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "rostering_pipeline.cli", "sync"]
    crashed = subprocess.run(
        [sys.executable, "-m", "rostering_pipeline_tests.fault_points", "apply.mid:kill", "sync"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert crashed.returncode == KILLED, crashed.stderr[-2000:]
    assert [s for _, s in _statuses(pipeline)] == ["applied", "received"]
    reports_before = len(pipeline.outbox(LEA))

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert again.returncode == 0, again.stderr[-2000:]
    assert "left unfinished by a process that ended: marked failed" in again.stdout + again.stderr
    summary = again.stdout.splitlines()[-1].split()
    assert summary[:2] == [LEA, "applied"], again.stdout  # not "run failed": it replayed
    assert [s for _, s in _statuses(pipeline)] == ["applied", "applied"]
    second = _statuses(pipeline)[-1][0]
    assert pipeline.query("select count(*) from roster.changes where upload_id = ?", [second]) == [
        (5,)
    ]
    assert len(pipeline.outbox(LEA)) == reports_before + 2  # its report and rejections CSV
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        statuses = [r.dagster_run.status for r in instance.get_run_records()]
    assert dg.DagsterRunStatus.STARTED not in statuses
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert "Nothing to sync" in third.stdout + third.stderr  # exactly once


@BOTH_WAREHOUSES
def test_backfill_reapplies_the_latest_archived_upload(pipeline: Pipeline) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.execute("delete from roster.enrollments where student_id = 'S2'")

    backfill = _materialize(pipeline, {})  # what a UI backfill of the LEA's partition runs

    assert backfill.success
    [(upload_id, status)] = _statuses(pipeline)
    assert status == "applied"
    assert pipeline.query("select count(*) from roster.enrollments") == [(3,)]
    assert pipeline.query(
        "select key, change from roster.changes where upload_id = ? and applied_at >"
        " (select min(applied_at) from roster.changes)",
        [upload_id],
    ) == [("C1|S2", "add")]
    assert _materialize(pipeline, {}).success  # again: nothing left to change
    assert pipeline.query("select count(*) from roster.changes") == [(12 + 1,)]


def test_nightly_compaction_drops_deleted_rows_and_keeps_every_row(pipeline: Pipeline) -> None:
    """Applies leave deleted rows in place (no vacuum at their checkpoints); the
    warehouse_maintenance job rewrites the tables without them, changing no row. (DuckDB's
    row groups: PostgreSQL's autovacuum reclaims deleted rows on its own.)"""
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    assert [r.success for r in pipeline.sync()] == [True]
    tables = ("roster.students", "roster.enrollments", "roster.accounts")
    rows = {t: sorted(pipeline.query(f"select * from {t}")) for t in tables}
    groups = {t: _row_groups(pipeline, t) for t in tables}
    assert groups["roster.students"] > 1  # day 2's replaced rows sit beside deleted ones

    result = warehouse_maintenance.execute_in_process(
        instance=pipeline.instance,
        resources={"warehouse": WarehouseResource(path=str(pipeline.warehouse))},
    )

    assert result.success
    assert {t: sorted(pipeline.query(f"select * from {t}")) for t in tables} == rows
    assert {t: _row_groups(pipeline, t) for t in tables} == {t: 1 for t in tables}


def _row_groups(pipeline: Pipeline, table: str) -> int:
    [(count,)] = pipeline.query(
        f"select count(distinct row_group_id) from pragma_storage_info('{table}')"
    )
    return count
