"""Helpers for the fault, hostile-input and isolation tests: a sensor pass and a run kept
apart (so a fault can be set between them), generated uploads, and archive checks."""

from __future__ import annotations

import hashlib
import os
import traceback
from pathlib import Path

import dagster as dg

from rostering_demo.generator import LeaSpec, generate_upload
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline_tests.conftest import DAY, DAY_ONE, Pipeline


def sensor_requests(pipeline: Pipeline, cursor: str | None = None) -> dg.SensorResult:
    """One tick of lea_inbox_sensor against the pipeline's real servers."""
    defs = pipeline.defs()
    sensor = defs.resolve_sensor_def("lea_inbox_sensor")
    with dg.build_sensor_context(
        instance=pipeline.instance, resources=defs.resources, cursor=cursor
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        pipeline.instance.add_dynamic_partitions(lea_partitions.name, list(request.partition_keys))
    return result


def execute(pipeline: Pipeline, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run the daemon would launch for `request`, in this process."""
    job = pipeline.defs().resolve_job_def("sync_upload")
    return job.execute_in_process(
        run_config=request.run_config,
        instance=pipeline.instance,
        partition_key=request.partition_key,
        tags=request.tags,
        raise_on_error=False,
    )


def failure_messages(pipeline: Pipeline, run_id: str) -> str:
    """Every step failure of a run, causes included, as one text."""
    parts = []
    for event in pipeline.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = event.dagster_event.event_specific_data.error
        while error is not None:
            parts.append(error.message)
            error = error.cause
    return "\n".join(parts)


def generated_files(
    tmp: Path, spec: LeaSpec, *, day: int = 1, inject: tuple[str, ...] = ()
) -> dict[str, bytes]:
    """A realistic upload of `spec` on `day` from the seeded generator, as file contents."""
    out = generate_upload(spec, tmp / f"gen-{spec.lea_id}-{day}-{'-'.join(inject)}", day=day,
                          inject=inject)  # fmt: skip
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def stamp(path: Path, day: int) -> None:
    """Give a file the server mtime of an upload day, as `Pipeline.upload` does."""
    moment = DAY_ONE + (day - 1) * DAY
    os.utime(path, (moment, moment), follow_symlinks=False)


def assert_archive_whole(archive: Path) -> list[Path]:
    """Every archived file is complete (named by its own sha256) and nothing is left half-way
    in the staging folder; returns the archived files (not the uploads' manifests)."""
    staged = list((archive / ".incoming").iterdir()) if (archive / ".incoming").exists() else []
    assert staged == [], f"partial downloads left in staging: {staged}"
    files = [
        p
        for p in archive.rglob("*")
        if p.is_file() and ".incoming" not in p.parts and p.parent.name != "manifests"
    ]
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    return files


def messages_shown(error: BaseException) -> str:
    """The messages a run's failure shows of `error`: its own and those of the exceptions
    chained to it (the cause, or the context unless suppressed), as Dagster serialises them.
    The stack's source lines are left out: they are code, never an upload's values."""
    messages = []
    seen: BaseException | None = error
    while seen is not None:
        messages.append("".join(traceback.format_exception_only(seen)))
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(messages)
