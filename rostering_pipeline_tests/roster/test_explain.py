"""`rostering explain` answers "student X isn't in teacher Y's class" from the warehouse."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rostering_pipeline.cli import main
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.uploads import day_one, day_two

LEA = "101912"


@BOTH_WAREHOUSES
def test_explain_student_shows_state_classes_changes_and_rejections(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    pipeline.sync()
    capsys.readouterr()

    assert main(["explain", "--lea", LEA, "--student", "S3"]) == 0

    out = capsys.readouterr().out
    assert "grade=08" in out
    assert "C2  Grade 7 Science  T2" in out
    assert "update  students     S3" in out and "grade: 07 -> 08" in out
    assert "students.csv line 3" in out


@BOTH_WAREHOUSES
def test_explain_class_lists_students_and_dropped_enrollment(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    pipeline.sync()
    capsys.readouterr()

    assert main(["explain", "--lea", LEA, "--class", "C1"]) == 0

    out = capsys.readouterr().out
    assert "-- students now (2)\n  S1\n  S4" in out
    assert "drop    enrollments  C1|S2" in out


@BOTH_WAREHOUSES
def test_explain_staff_shows_account(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    capsys.readouterr()

    assert main(["explain", "--lea", LEA, "--staff", "T1"]) == 0

    out = capsys.readouterr().out
    assert "ana.reyes@example.org  active" in out
    assert "C1  Grade 4 Math  teacher" in out


@BOTH_WAREHOUSES
def test_explain_student_rejected_enrollment(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    files = day_one()
    files["students.csv"] = files["students.csv"].replace("2016-05-06", "2016-13-06")
    pipeline.upload(LEA, files, day=1)
    pipeline.sync()
    capsys.readouterr()

    assert main(["explain", "--lea", LEA, "--student", "S2"]) == 0

    out = capsys.readouterr().out
    assert "Not in the applied roster now." in out
    assert (
        "enrollments.csv line 3, column student_id: student_id must be a student_id in students.csv"
        in out
    )


def test_explain_without_a_warehouse_setting_reads_the_demos(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Unset, ROSTERING_WAREHOUSE means the demo's warehouse: the one `rostering demo` fills and
    `rostering ui` shows (rostering_pipeline/places.py; ROSTERING_DEMO_DIR moves the demo)."""
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    demo = tmp_path / "elsewhere" / "demo"
    demo.mkdir(parents=True)
    shutil.copy(pipeline.warehouse, demo / "warehouse.duckdb")
    env = {k: v for k, v in os.environ.items() if k != "ROSTERING_WAREHOUSE"}
    env["ROSTERING_DEMO_DIR"] = str(demo)
    explained = subprocess.run(
        [sys.executable, "-m", "rostering_pipeline.cli", "explain", "--lea", LEA, "--staff", "T1"],
        cwd=tmp_path,  # not the repository: the default does not hang on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "ana.reyes@example.org  active" in explained.stdout
