from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from rostering_pipeline import ledger
from rostering_pipeline.decision import Decision, UploadDecision
from rostering_pipeline.defs import stages
from rostering_pipeline.defs.partitions import lea_partitions
from rostering_pipeline.held import WORDS, HeldUpload, launchpad_url
from rostering_pipeline.lea_settings import LeaSettingsResource
from rostering_pipeline.markdown_text import md_text
from rostering_pipeline.notify import Notifier
from rostering_pipeline.outbox import deliver_report
from rostering_pipeline.roster.apply import apply_upload
from rostering_pipeline.roster.checks import dangling_references, key_sample, reconcile
from rostering_pipeline.roster.plan import plan_upload
from rostering_pipeline.settings import IngestSettings
from rostering_pipeline.sftp import SftpResource
from rostering_pipeline.upload_spec.files import ENTITIES
from rostering_pipeline.upload_spec.validate import ValidatedUpload
from rostering_pipeline.uploads import Upload
from rostering_pipeline.validated_frames import from_frames
from rostering_pipeline.warehouse import Connection, WarehouseResource
from rostering_pipeline.warehouse import uploads as upload_rows
from rostering_pipeline.warehouse.roster import LoginTaken, applied_counts

MASS_DROP_SAFEGUARD = "mass_drop_safeguard"
RECONCILIATION = "reconciliation"
REFERENTIAL_INTEGRITY = "referential_integrity"
#: Dagster's run tag that makes run retries re-execute a run failed by a step (see
#: deploy/dagster.yaml `run_retries.retry_on_asset_or_op_failure`).
RETRY_ON_STEP_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
LATEST_UPLOAD_APPLIED = "latest_upload_applied"
APPLIED = ("apply", "applied", "duplicate")


class RosterDiffConfig(dg.Config):
    """An operator's decision on an upload the safeguard held: replay it (raw_upload's
    `replay_upload_id`) with `release` to apply it anyway, or `reject` to refuse it."""

    held_upload: Literal["hold", "release", "reject"] = "hold"
    reapply: bool = Field(
        default=True,
        description="When the run's upload was already applied or rejected and is still the "
        "LEA's latest (a backfill or replay), validate it again under today's rules and "
        "apply the difference. False: report the earlier decision only.",
    )


VALIDATED_INS = {
    "upload_rejections": dg.AssetIn(),
    **{f"validated_{e}": dg.AssetIn() for e in ENTITIES},
}


def _validated(
    raw_upload: Upload, upload_rejections: pl.DataFrame, frames: dict[str, pl.DataFrame]
) -> ValidatedUpload:
    """The upload as validated, from the `validated_<entity>` inputs of VALIDATED_INS."""
    tables = {e: frames[f"validated_{e}"] for e in ENTITIES}
    return from_frames(raw_upload.lea_id, tables, upload_rejections)


def _change_metadata(plan: UploadDecision) -> dict[str, dg.MetadataValue]:
    counts = plan.counts()
    table = "\n".join(
        f"| {e} | {c['add']} | {c['update']} | {c['drop']} |" for e, c in counts.items()
    )
    return {
        "decision": dg.MetadataValue.text(plan.decision),
        "reason": dg.MetadataValue.text(plan.reason or "-"),
        "upload_id": dg.MetadataValue.text(plan.upload_id),
        "adds": dg.MetadataValue.int(plan.total("add")),
        "updates": dg.MetadataValue.int(plan.total("update")),
        "drops": dg.MetadataValue.int(plan.total("drop")),
        "changes_by_entity": dg.MetadataValue.json(counts),
        "summary": dg.MetadataValue.md(
            f"**{plan.decision}** {md_text(plan.reason)}\n\n| entity | add | update | drop |\n"
            f"|---|---:|---:|---:|\n{table}"
        ),
    }


@dg.asset(
    partitions_def=lea_partitions,
    group_name=stages.DIFF,
    kinds={"polars", "duckdb"},
    owners=["team:rostering"],
    ins={"raw_upload": dg.AssetIn(), **VALIDATED_INS},
    check_specs=[
        dg.AssetCheckSpec(
            MASS_DROP_SAFEGUARD,
            asset="roster_diff",
            partitions_def=lea_partitions,
            description="Holds an upload that would drop more than the safeguard allows "
            "(default: over 10% and over 5 of the LEA's students, staff, classes or "
            "enrollments; per LEA in deploy/lea_settings.toml). A hold is a decision waiting "
            "for an operator, not a failure: the check warns with the upload_id, the drops "
            "and thresholds, and links that release or reject it; the run ends with "
            "applied_roster and sync_report skipped (the LEA's report says it is held).",
        )
    ],
)
def roster_diff(
    context: dg.AssetExecutionContext,
    config: RosterDiffConfig,
    warehouse: WarehouseResource,
    lea_settings: LeaSettingsResource,
    sftp: SftpResource,
    ingest_settings: IngestSettings,
    notifier: Notifier,
    raw_upload: Upload,
    upload_rejections: pl.DataFrame,
    **validated_frames: pl.DataFrame,
):
    """Adds, updates and drops per entity that the upload makes to the LEA's applied roster."""
    validated = _validated(raw_upload, upload_rejections, validated_frames)
    with warehouse.connect(read_only=True) as conn:
        plan = plan_upload(
            conn,
            raw_upload,
            validated,
            lea_settings.for_lea(raw_upload.lea_id),
            held_upload=config.held_upload,
            reapply=config.reapply,
        )
    held = plan.decision == "held" and plan.held_by == "safeguard"
    hold = HeldUpload(raw_upload.lea_id, raw_upload.upload_id, plan.reason) if held else None
    yield dg.Output(
        plan, metadata={**_change_metadata(plan), **(_hold_metadata(hold) if hold else {})}
    )
    if hold is not None:
        decision = Decision(
            "held",
            plan.reason,
            datetime.now(UTC),
            "safeguard",
            settings=plan.settings.model_dump(mode="json"),
        )
        with warehouse.connect() as conn:
            ledger.hold(conn, raw_upload.upload_id, decision)
        ledger.append_decision(Path(ingest_settings.archive_root), raw_upload, decision)
        deliver_report(sftp, raw_upload, plan, upload_rejections)
        context.log.warning(hold.action())
        notifier.notify(f"LEA {raw_upload.lea_id}: upload held for review", hold.action())
    yield dg.AssetCheckResult(
        check_name=MASS_DROP_SAFEGUARD,
        passed=not held,
        severity=dg.AssetCheckSeverity.WARN,
        description=hold.action() if hold else "within the safeguard",
        metadata={
            "lea_id": raw_upload.lea_id,
            "upload_id": raw_upload.upload_id,
            "reason": plan.reason or "-",
            "drops_by_entity": {e: d.count("drop") for e, d in plan.entities.items()},
            "active_by_entity": plan.active,
            "threshold_by_entity": {
                e: f"over {plan.settings.threshold(e).max_drop_fraction:.0%} and over "
                f"{plan.settings.threshold(e).min_drop_count}"
                for e in plan.entities
            },
            **(_hold_metadata(hold) if hold else {}),
        },
    )


def _hold_metadata(hold: HeldUpload) -> dict[str, dg.MetadataValue]:
    """Where an operator looks at a hold: what to do, and the links that do it."""
    return {
        "held_for_review": dg.MetadataValue.md(hold.action_markdown()),
        **{w: dg.MetadataValue.url(launchpad_url(hold.lea_id, hold.upload_id, w)) for w in WORDS},
    }


def _check(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name, asset="applied_roster", partitions_def=lea_partitions, description=description
    )


@dg.multi_asset(
    outs={
        "applied_roster": dg.AssetOut(
            group_name=stages.APPLY,
            kinds={"duckdb"},
            owners=["team:rostering"],
            description="The LEA's roster in roster.* after the upload, applied in one "
            "transaction.",
            is_required=False,
        )
    },
    partitions_def=lea_partitions,
    # The write is serialised by DuckDB's file lock, waited out in WarehouseResource.connect
    # for just the transaction (not the whole step); apply_upload plans again inside the
    # transaction if another upload of the LEA was applied since roster_diff.
    ins={"raw_upload": dg.AssetIn(), "roster_diff": dg.AssetIn(), **VALIDATED_INS},
    check_specs=[
        _check(
            LATEST_UPLOAD_APPLIED,
            "Warns when the LEA's latest upload is not applied (held, rejected, superseded, "
            "or its run failed): the roster in roster.* is then an older upload's. The "
            "metadata says which upload, why, and for a held one how to release or reject it.",
        ),
        _check(
            RECONCILIATION,
            "After an apply, the roster equals the validated upload minus its rejections, "
            "entity by entity; fails with the differing keys. Not evaluated when nothing was "
            "applied.",
        ),
        _check(
            REFERENTIAL_INTEGRITY,
            "Every applied enrollment, class, co-teacher, staff member and student points at "
            "rows that are in the LEA's roster.",
        ),
    ],
    # Not every run materializes the roster or evaluates every check: a held upload applies
    # nothing (the asset is not materialized and sync_report is skipped), and
    # reconciliation only runs after an apply.
    can_subset=True,
)
def applied_roster(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    ingest_settings: IngestSettings,
    raw_upload: Upload,
    roster_diff: UploadDecision,
    upload_rejections: pl.DataFrame,
    **validated_frames: pl.DataFrame,
):
    validated = _validated(raw_upload, upload_rejections, validated_frames)
    lea_id = raw_upload.lea_id
    if roster_diff.decision == "held" and roster_diff.held_by == "safeguard":
        # roster_diff recorded the hold and wrote the LEA's report: nothing to apply.
        context.log.info(
            f"LEA {lea_id}: upload {raw_upload.upload_id} is held for review: nothing applied, "
            "and sync_report is skipped (the LEA's report saying it is held is in its outbox)"
        )
        with warehouse.connect(read_only=True) as conn:
            yield _latest_upload_applied(conn, lea_id)
            yield _referential_integrity(conn, raw_upload)
        return
    with warehouse.connect() as conn:
        try:
            plan = apply_upload(conn, raw_upload, validated, roster_diff, datetime.now(UTC))
        except LoginTaken:
            # A new run validates again with the login now taken and rejects the row: opt
            # this run in to Dagster's run retries, which skip failed steps otherwise.
            context.instance.add_run_tags(context.run.run_id, {RETRY_ON_STEP_FAILURE_TAG: "true"})
            raise
        applied = plan.decision in APPLIED and validated.accepted
        differing = reconcile(conn, validated) if applied else {}
        sizes = applied_counts(conn, lea_id)
        checks = [_latest_upload_applied(conn, lea_id), _referential_integrity(conn, raw_upload)]
    archive_root = Path(ingest_settings.archive_root)
    if plan.recorded is not None:
        ledger.append_decision(archive_root, raw_upload, plan.recorded)
        ledger.append_superseded(
            archive_root,
            plan.superseded,
            Decision(
                "superseded",
                f"held, then replaced by the newer upload {raw_upload.upload_id}",
                plan.recorded.decided_at,
                by=f"newer upload {raw_upload.upload_id}",
            ),
        )
    context.log.info(
        f"LEA {lea_id}: upload {raw_upload.upload_id} {plan.decision}: "
        f"{plan.total('add')} adds, {plan.total('update')} updates, {plan.total('drop')} drops"
    )
    yield dg.Output(
        plan,
        output_name="applied_roster",
        metadata={
            **_change_metadata(plan),
            "roster_rows": dg.MetadataValue.json(sizes),
            "dagster/row_count": dg.MetadataValue.int(sizes["students"]),
        },
    )
    yield from checks
    if applied:  # a check that did not check reports nothing, rather than Passed
        yield dg.AssetCheckResult(
            asset_key="applied_roster",
            check_name=RECONCILIATION,
            passed=not differing,
            metadata={
                "lea_id": lea_id,
                "upload_id": raw_upload.upload_id,
                "differing_keys": dg.MetadataValue.json(key_sample(differing)),
            },
        )


def _referential_integrity(conn: Connection, upload: Upload) -> dg.AssetCheckResult:
    dangling = dangling_references(conn, upload.lea_id)
    return dg.AssetCheckResult(
        asset_key="applied_roster",
        check_name=REFERENTIAL_INTEGRITY,
        passed=not dangling,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "lea_id": upload.lea_id,
            "upload_id": upload.upload_id,
            "dangling_by_reference": dg.MetadataValue.json(dangling),
        },
    )


def _latest_upload_applied(conn: Connection, lea_id: str) -> dg.AssetCheckResult:
    """Whether the roster is the LEA's latest upload; if not, which one and why."""
    upload_id, status, reason, held_by = upload_rows.latest_upload(conn, lea_id)
    applied = status in APPLIED
    held = status == "held" and held_by == "safeguard"
    hold = HeldUpload(lea_id, upload_id, reason or "") if held else None
    return dg.AssetCheckResult(
        asset_key="applied_roster",
        check_name=LATEST_UPLOAD_APPLIED,
        passed=applied,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"the latest upload {upload_id} is applied"
            if applied
            else hold.action()
            if hold
            else f"the latest upload {upload_id} is {status}, not applied: {reason or '-'}"
        ),
        metadata={
            "lea_id": lea_id,
            "latest_upload_id": upload_id,
            "latest_status": status if not held_by else f"{status} ({held_by})",
            "reason": reason or "-",
            **(_hold_metadata(hold) if hold else {}),
        },
    )
