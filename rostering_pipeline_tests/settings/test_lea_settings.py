"""Per-LEA settings through the real pipeline: additions-only, blackouts, thresholds, and a
bad settings file refused at load."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rostering_pipeline.lea_settings import LeaSettingsError, load_settings
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.roster.test_apply_invariants import _upload
from rostering_pipeline_tests.uploads import day_one, day_two

LEA = "101912"


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lea_settings.toml"
    path.write_text("[defaults]\n")
    monkeypatch.setenv("ROSTERING_LEA_SETTINGS", str(path))
    return path


def _statuses(pipeline: Pipeline) -> list[str]:
    return [s for (s,) in pipeline.query("select status from ingest.uploads order by received_at")]


def test_additions_only_never_drops(pipeline: Pipeline, settings_file: Path) -> None:
    settings_file.write_text(f'["{LEA}"]\nmode = "additions_only"\n')
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)  # S2 missing, S4 new, S3 changed grade

    pipeline.sync()

    assert pipeline.query("select student_id, grade from roster.students order by 1") == [
        ("S1", "04"),
        ("S2", "04"),
        ("S3", "08"),
        ("S4", "04"),
    ]
    assert pipeline.query("select count(*) from roster.changes where change = 'drop'") == [(0,)]
    reason = pipeline.query("select reason from ingest.uploads order by received_at desc limit 1")
    assert reason == [("additions-only mode: 2 records missing from the upload were kept",)]


def test_blackout_holds_then_applies_only_the_newest(
    pipeline: Pipeline, settings_file: Path
) -> None:
    in_force = '["101912"]\nblackouts = [{ start = 2026-09-02, end = 2099-12-31 }]\n'
    settings_file.write_text(in_force)
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    pipeline.sync()
    day_three = day_two()
    day_three["students.csv"] = day_three["students.csv"].replace("Eli,Park", "Eli,Parker")
    pipeline.upload(LEA, day_three, day=3)
    pipeline.sync()

    assert _statuses(pipeline) == ["applied", "held", "held"]
    assert pipeline.query("select count(*) from roster.students") == [(3,)]
    assert pipeline.query("select student_id from roster.students order by 1")[-1] == ("S3",)
    defs = pipeline.defs()
    sensor = defs.resolve_sensor_def("blackout_release_sensor")
    with dg.build_sensor_context(instance=pipeline.instance, resources=defs.resources) as ctx:
        assert sensor(ctx).run_requests == []

    settings_file.write_text(in_force.replace("2099-12-31", "2026-10-31"))  # no restart
    with dg.build_sensor_context(instance=pipeline.instance, resources=defs.resources) as ctx:
        requests = sensor(ctx).run_requests
    assert len(requests) == 1
    result = defs.resolve_job_def("sync_upload").execute_in_process(
        run_config=requests[0].run_config,
        instance=pipeline.instance,
        partition_key=requests[0].partition_key,
    )

    assert result.success
    assert _statuses(pipeline) == ["applied", "superseded", "applied"]
    assert pipeline.query("select last_name from roster.students where student_id = 'S4'") == [
        ("Parker",)
    ]


def test_per_lea_threshold_overrides_the_default(pipeline: Pipeline, settings_file: Path) -> None:
    settings_file.write_text(f'["{LEA}".safeguard.all]\nmax_drop_fraction = 0.5\n')
    other = "227901"
    for lea in (LEA, other):
        files = _upload(100)
        if lea == other:
            files = {k: v.replace("101912", "227901") for k, v in files.items()}
        pipeline.upload(lea, files, day=1)
    pipeline.sync()
    for lea in (LEA, other):
        files = _upload(60)
        if lea == other:
            files = {k: v.replace("101912", "227901") for k, v in files.items()}
        pipeline.upload(lea, files, day=2)

    pipeline.sync()

    assert pipeline.query(
        "select lea_id, arg_max(status, received_at) from ingest.uploads group by 1 order by 1"
    ) == [(LEA, "applied"), (other, "held")]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('["101912"]\nmode = "sometimes"\n', ["LEA 101912", "mode"]),
        ('["101912".safeguard.pupils]\nmin_drop_count = 3\n', ["LEA 101912", "pupils"]),
        (
            '["101912"]\nblackouts = [{ start = 2027-07-01, end = 2027-06-01 }]\n',
            ["LEA 101912", "blackouts"],
        ),
        ('["1019"]\nmode = "complete"\n', ["[1019]", "6-digit"]),
        ("[defaults]\nmax_drop = 1\n", ["defaults", "max_drop"]),
    ],
)
def test_invalid_settings_file_fails_at_load(
    settings_file: Path, text: str, named: list[str]
) -> None:
    settings_file.write_text(text)

    with pytest.raises(LeaSettingsError) as raised:
        load_settings(settings_file)

    for word in named:
        assert word in str(raised.value)


def test_code_location_refuses_to_load_a_bad_settings_file(settings_file: Path) -> None:
    settings_file.write_text('["101912"]\nmode = "sometimes"\n')
    from rostering_pipeline.definitions import defs

    with pytest.raises(Exception) as raised:
        defs()

    causes, error = [], raised.value
    while error is not None:
        causes.append(error)
        error = error.__cause__
    settings_errors = [e for e in causes if isinstance(e, LeaSettingsError)]
    assert settings_errors and "LEA 101912" in str(settings_errors[0])
    assert "mode" in str(settings_errors[0])
