"""What a sync run's row on the Runs page shows: the LEA and the upload, not process ids or
the inbox listing's hash (those are hidden tags, kept for the sensors and `rostering sync`)."""

from __future__ import annotations

import re

import dagster as dg
from dagster._core.storage.tags import TagType, get_tag_type  # what the UI's GraphQL hides by

from rostering_pipeline import run_tags
from rostering_pipeline_tests.conftest import Pipeline
from rostering_pipeline_tests.uploads import day_one, day_two

LEA = "101912"


def _shown(run: dg.DagsterRun) -> dict[str, str]:
    """The run's tags as the Runs page and GraphQL show them."""
    return {k: v for k, v in run.tags.items() if get_tag_type(k) != TagType.HIDDEN}


def test_a_sync_run_shows_its_upload_id_and_hides_pids_and_listing_hashes(
    pipeline: Pipeline,
) -> None:
    pipeline.upload(LEA, day_one(), day=1)
    pipeline.sync()
    pipeline.upload(LEA, day_two(), day=2)
    pipeline.sync()

    uploads = dict(pipeline.query("select run_id, upload_id from ingest.uploads"))
    records = pipeline.instance.get_run_records(dg.RunsFilter(job_name="sync_upload"))
    assert len(records) == 2
    for record in records:
        run = record.dagster_run
        shown = _shown(run)
        assert shown["upload_id"] == uploads[run.run_id], shown
        assert shown["lea_id"] == LEA
        # Every tag the page shows is Dagster's own or one an operator reads.
        assert {k for k in shown if not k.startswith("dagster/")} == {"lea_id", "upload_id"}, shown
        # The bookkeeping is still there for the sensors and `rostering sync`.
        assert run.tags[run_tags.UPLOAD_KEY_TAG] and run.tags[run_tags.PROCESS_TAG]
        # No process id among what is shown.
        pid = run.tags[run_tags.PROCESS_TAG].split(":")[1]
        assert all(pid not in v for v in shown.values()), shown


def test_bookkeeping_tags_are_ones_dagster_hides() -> None:
    for tag in (run_tags.UPLOAD_KEY_TAG, run_tags.PROCESS_TAG, run_tags.FORKED_TAG):
        assert get_tag_type(tag) == TagType.HIDDEN, tag
    for tag in (run_tags.UPLOAD_ID_TAG, run_tags.LEA_ID_TAG):
        assert get_tag_type(tag) != TagType.HIDDEN, tag


def test_our_tag_keys_are_ones_dagster_accepts_without_deprecation() -> None:
    """Dagster deprecates keys of more than one `/` section or with other characters than
    letters, digits, `_`, `-` and `.` (they will be refused in 2.0)."""
    compliant = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
    tags = [v for k, v in vars(run_tags).items() if k.endswith("_TAG") and isinstance(v, str)]
    assert tags and all(compliant.match(tag) for tag in tags), tags
