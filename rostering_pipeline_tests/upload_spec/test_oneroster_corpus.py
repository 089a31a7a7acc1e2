"""Realistic OneRoster 1.1 exports (corpus/oneroster/, each modelled on how an SIS or
rostering platform exports; see its README) sent as a new LEA would send them: through the
SFTP inbox, the sensor, the assets and the warehouse, on each backend (the DuckDB file and
PostgreSQL). Each must apply its whole roster on the first upload, exactly as its
expected.json says, with no row rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rostering_pipeline.upload_spec.formats.oneroster_tables import NO_PRIMARY
from rostering_pipeline_tests.conftest import BOTH_WAREHOUSES, Pipeline
from rostering_pipeline_tests.oneroster_uploads import zipped

LEA = "101912"
CORPUS = Path(__file__).parent.parent / "corpus" / "oneroster"
SETS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
#: Half the sets go as one .zip (inside a folder, as some SIS write it), half as loose files.
ZIPPED = set(SETS[::2])
QUERIES = {
    "campuses": "select campus_id, campus_name from roster.campuses",
    "staff": "select s.staff_id, a.username, s.role, s.campus_id from roster.staff s"
    " join roster.accounts a using (lea_id, staff_id) where a.status = 'active'",
    "students": "select student_id, grade, campus_id, cast(birth_date as varchar), state_id"
    " from roster.students",
    "classes": "select class_id, campus_id, teacher_id, grade, school_year from roster.classes",
    "enrollments": "select class_id, student_id from roster.enrollments",
    "co_teachers": "select class_id, staff_id from roster.co_teachers",
}


def test_the_corpus_has_the_six_sets() -> None:
    assert len(SETS) == 6 and all((CORPUS / s / "expected.json").exists() for s in SETS)


def _upload(name: str) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted((CORPUS / name).glob("*.csv"))}
    return {f"{name}.zip": zipped(files, "export/")} if name in ZIPPED else files


@BOTH_WAREHOUSES
@pytest.mark.parametrize("name", SETS)
def test_a_real_export_applies_its_whole_roster_on_the_first_upload(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    expected = json.loads((CORPUS / name / "expected.json").read_text())
    settings = tmp_path / "lea_settings.toml"
    settings.write_text(f'[defaults]\n["{LEA}"]\noneroster_class_types = {expected["class_types"]!r}\n'.replace("'", '"'))  # fmt: skip
    monkeypatch.setenv("ROSTERING_LEA_SETTINGS", str(settings))
    pipeline.upload(LEA, _upload(name))

    runs = pipeline.sync()

    assert [r.success for r in runs] == [True]
    assert pipeline.query("select status from ingest.uploads") == [("applied",)]
    for entity, sql in QUERIES.items():
        found = sorted(list(row) for row in pipeline.query(sql))
        assert found == sorted(expected[entity]), entity
    assert pipeline.query("select count(*) from quality.rejections where level in ('row', 'upload')") == [(0,)]  # fmt: skip
    assert _no_primary_warnings(pipeline) == sorted(
        w["class_id"] for w in expected["warnings"] if w["kind"] == "no_primary_teacher"
    )
    report = next(t for n, t in pipeline.outbox(LEA).items() if n.startswith("sync_report_"))
    if expected["out_of_dates"]:
        assert f"{expected['out_of_dates']} enrollments were not applied" in report
    else:
        assert "outside their beginDate/endDate" not in report


def _no_primary_warnings(pipeline: Pipeline) -> list[str]:
    rows = pipeline.query(
        "select value from quality.rejections where level = 'warning' and rule = ?", [NO_PRIMARY]
    )
    return sorted(value for (value,) in rows)
