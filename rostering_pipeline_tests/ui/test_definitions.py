"""The code location loads, and its asset graph is the one DESIGN.md draws."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from rostering_pipeline.definitions import defs
from rostering_pipeline.defs import stages
from rostering_pipeline.upload_spec.files import ENTITIES

REPO = Path(__file__).resolve().parents[2]
VALIDATED = {f"validated_{e}" for e in ENTITIES}


def _parents(graph: dg.AssetGraph, key: str) -> set[str]:
    return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}


def test_asset_graph_matches_design() -> None:
    graph = defs().resolve_asset_graph()

    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_upload", *VALIDATED, "upload_rejections", "roster_diff"} | {
        "applied_roster",
        "sync_report",
        "lea_settings_in_force",
        "lea_status_board",
    }
    for key in VALIDATED | {"upload_rejections"}:
        assert _parents(graph, key) == {"raw_upload"}
    assert _parents(graph, "roster_diff") == {"raw_upload", "upload_rejections", *VALIDATED}
    assert "roster_diff" in _parents(graph, "applied_roster")
    assert _parents(graph, "sync_report") == {"raw_upload", "applied_roster", "upload_rejections"}


def test_every_asset_is_partitioned_by_lea() -> None:
    graph = defs().resolve_asset_graph()

    unpartitioned = {dg.AssetKey("lea_settings_in_force"), dg.AssetKey("lea_status_board")}
    for key in graph.get_all_asset_keys() - unpartitioned:
        partitions = graph.get(key).partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition), key
        assert partitions.name == "lea"


def test_checks_sensor_and_job_are_defined() -> None:
    d = defs()
    graph = d.resolve_asset_graph()

    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("roster_diff", "mass_drop_safeguard"),
        ("applied_roster", "reconciliation"),
        ("applied_roster", "referential_integrity"),
        ("applied_roster", "latest_upload_applied"),
        ("lea_status_board", "lea_freshness"),
        ("upload_rejections", "upload_accepted"),
    }
    assert {s.name for s in d.sensors} == {
        "lea_inbox_sensor",
        "blackout_release_sensor",
        "sync_run_failure_sensor",
        "lea_status_board_sensor",
    }
    assert d.resolve_sensor_def("lea_inbox_sensor").job_name == "sync_upload"
    assert d.resolve_job_def("sync_upload").partitions_def.name == "lea"


def test_workspace_validates_with_dagster_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_every_definition_explains_itself_to_an_operator() -> None:
    d = defs()
    graph = d.resolve_asset_graph()

    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 30, key
        assert node.group_name in {*stages.PIPELINE, "settings", "status"}, (key, node.group_name)
        assert node.kinds, key
        assert node.owners == ["team:rostering"], key
        assert "dagster/code_references" in node.metadata, key
    for check in d.asset_checks or []:
        for spec in check.check_specs:
            assert spec.description, spec.key
    for asset in d.assets or []:
        for spec in getattr(asset, "check_specs", []):
            assert spec.description, spec.key
    for sensor in d.sensors or []:
        assert sensor.description, sensor.name
    for job in d.resolve_all_job_defs():
        if not job.name.startswith("__"):
            assert job.description, job.name


def test_no_asset_check_takes_launch_config() -> None:
    """A check with config puts its entry (`<asset>_<check>`) in the Launchpad's scaffold for
    every selection holding the asset, and a job that leaves the check out then refuses that
    entry: the Launchpad opened invalid ('unexpected config entry "raw_upload_lea_freshness"')
    with Materialize disabled. Settings a check needs come from resources, not launch config."""
    with_config = []
    for checks_def in defs().resolve_asset_graph().assets_defs:
        if checks_def.keys or not checks_def.check_keys:
            continue  # an asset (its checks share its step and its config) or nothing to check
        config_type = checks_def.node_def.config_schema.as_field().config_type
        fields = sorted(getattr(config_type, "fields", None) or {})
        if fields:
            with_config.append((checks_def.node_def.name, fields))
    assert with_config == []
