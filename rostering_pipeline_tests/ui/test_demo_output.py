"""What `rostering demo` (what `./run demo` calls) prints, and what its runs log to Dagster.

The demo runs once, in a subprocess, with its folder moved to a temporary one
(ROSTERING_DEMO_DIR): its SFTP server, warehouse and Dagster instance are its own."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_LEAS = ("015901", "101912", "227901")
#: Events Dagster logs once per step input or output (not per step or per asset).
PER_INPUT = ("STEP_INPUT", "LOADED_INPUT", "HANDLED_OUTPUT")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    root = tmp_path_factory.mktemp("demo") / "demo"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ROSTERING_") and k != "DAGSTER_HOME"
    }
    env["ROSTERING_DEMO_DIR"] = str(root)
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-m", "rostering_pipeline.cli", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, root


def test_demo_prints_no_dagster_warnings(
    demo: tuple[subprocess.CompletedProcess, Path],
) -> None:
    done, _ = demo
    warnings = [line for line in done.stderr.splitlines() if re.search(r"\w+Warning\b", line)]
    assert not warnings, f"{len(warnings)} warning lines:\n" + "\n".join(warnings[:5])
    # What is left on stderr: each run's INFO lines (received, validated, applied, reported;
    # Dagster's own line for a check that did not run, on a rejected upload).
    lines = done.stderr.splitlines()
    assert all(" - INFO - sync_upload - " in line for line in lines), lines[:5]
    for lea_id in SAMPLE_LEAS:
        for step in ("raw_upload", "validated_tables", "applied_roster", "sync_report"):
            assert any(f" - {step} - LEA {lea_id}: " in line for line in lines), (lea_id, step)


def test_a_runs_per_input_events_are_what_the_readme_says(
    demo: tuple[subprocess.CompletedProcess, Path],
) -> None:
    """README ("What made the difference") states how many per-input events a sync run logs."""
    _, root = demo
    readme = (REPO / "README.md").read_text()
    stated = {}
    for kind in PER_INPUT:
        match = re.search(rf"(\d+) `{kind}`", readme)
        assert match, f"README does not say how many {kind} events a run logs"
        stated[kind] = int(match.group(1))
    total = re.search(r"of a run's (\d+) events", readme)
    assert total, "README does not say how many events a run logs"

    counts = {}
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        for record in instance.get_run_records(dg.RunsFilter(job_name="sync_upload")):
            run = record.dagster_run
            events = instance.all_logs(run.run_id)
            by_type = collections.Counter(
                e.dagster_event.event_type_value for e in events if e.dagster_event
            )
            counts[run.tags["dagster/partition"]] = (len(events), by_type)
    assert sorted(counts) == list(SAMPLE_LEAS)
    applied, by_type = counts["101912"]  # a clean upload, applied whole
    assert {kind: by_type[kind] for kind in PER_INPUT} == stated, by_type
    assert applied == int(total.group(1)), by_type
