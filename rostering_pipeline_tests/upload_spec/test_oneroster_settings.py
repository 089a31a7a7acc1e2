"""The LEA's `oneroster_class_types` setting reaches validation through the validate asset:
with `scheduled` allowed, the scheduled class of a OneRoster set becomes a class (with its
enrollment) in the same run; by default it is skipped. Through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.oneroster_uploads import oneroster_day_one, zipped

LEA = "101912"


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lea_settings.toml"
    path.write_text("[defaults]\n")
    monkeypatch.setenv("ROSTERING_LEA_SETTINGS", str(path))
    return path


@pytest.mark.parametrize(
    ("setting", "classes"),
    [
        ("", ["C1", "C2"]),
        ('oneroster_class_types = ["homeroom", "scheduled"]\n', ["C1", "C2", "C9"]),
    ],
    ids=["default-homeroom-only", "scheduled-allowed"],
)
def test_oneroster_class_types_come_from_the_lea_settings(
    pipeline: Pipeline, settings_file: Path, setting: str, classes: list[str]
) -> None:
    settings_file.write_text(f'[defaults]\n["{LEA}"]\n{setting}')
    files = oneroster_day_one()
    files["enrollments.csv"] += "E8,,,C9,O2,T2,teacher,true,,\n"  # Band gets its teacher
    pipeline.upload(LEA, {"roster.zip": zipped(files)})

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    assert [c for (c,) in pipeline.query("select class_id from roster.classes order by 1")] == (
        classes
    )
    enrolled_in_c9 = pipeline.query(
        "select student_id from roster.enrollments where class_id = 'C9'"
    )
    assert enrolled_in_c9 == ([("S3",)] if "C9" in classes else [])
    skipped = pipeline.query(
        "select rule, level from quality.rejections where file = 'classes.csv'"
        " and \"column\" = 'classType'"
    )
    assert skipped == (
        []
        if "C9" in classes
        else [("1 class was not read: this LEA's classes come from classType homeroom", "warning")]
    )
    assert pipeline.query("select count(*) from quality.rejections where level <> 'warning'") == [
        (0,)
    ]
