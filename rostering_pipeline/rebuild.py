"""Disaster recovery: a new warehouse from the archive alone (DESIGN invariant 8).

Every upload's manifest (ledger.py) lists its archived files and each decision made on it:
when, the operator's word on a held upload, the LEA's settings then. Replaying every decision
of every LEA in the order they were made, through the same functions the runs call
(validate, plan, apply), with the decision's own time as the clock, gives back the same
rosters, accounts and usernames, change history and rejections. A decision that comes out
otherwise (the rules changed since, say) is reported, never hidden.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import ledger
from .decision import Decision
from .ingest import refusal_rejections
from .lea_settings import LeaSettings
from .quality import record_rejections
from .roster.apply import apply_upload
from .roster.plan import plan_upload
from .upload_spec.rejections import rejection_frame
from .upload_spec.validate import validate_upload
from .uploads import Upload
from .warehouse import Connection
from .warehouse import uploads as upload_rows
from .warehouse.roster import LoginTaken, other_leas_logins


@dataclass
class RebuildReport:
    uploads: int = 0
    decisions: int = 0
    #: "upload_id: <decision then> then, <decision now> now" for each that differed.
    differing: list[str] = field(default_factory=list)
    #: Uploads received but never decided (in flight when the warehouse was lost).
    undecided: list[str] = field(default_factory=list)


class WarehouseNotEmpty(ValueError):
    """The warehouse a rebuild was pointed at already holds uploads."""


def rebuild(
    archive_root: Path,
    conn: Connection,
    settings_for: Callable[[str], LeaSettings],
    progress: Callable[[str], None] = lambda _: None,
) -> RebuildReport:
    """Replay the archive into the empty warehouse behind `conn`.

    `settings_for` gives an LEA's settings for decisions whose manifest carries none."""
    if upload_rows.upload_count(conn):
        raise WarehouseNotEmpty("rebuild writes into an empty warehouse only: this one has uploads")
    uploads: dict[str, Upload] = {}
    events: list[tuple[datetime, str, Decision]] = []
    for path in ledger.manifests(archive_root):
        upload, decisions = ledger.read_manifest(archive_root, path)
        uploads[upload.upload_id] = upload
        events += [(d.decided_at, upload.upload_id, d) for d in decisions if d.by == "run"]
    events.sort(key=lambda e: (e[0], e[1]))
    report = RebuildReport(uploads=len(uploads))
    recorded: set[str] = set()
    for _, upload_id, decision in events:
        upload = uploads[upload_id]
        if upload_id not in recorded:
            ledger.record_received(conn, archive_root, upload, upload.received_at, "rebuild")
            recorded.add(upload_id)
        settings = (
            LeaSettings.model_validate(decision.settings)
            if decision.settings
            else settings_for(upload.lea_id)
        )
        try:
            _replay(conn, upload, decision, settings)
        except LoginTaken as error:
            report.differing.append(f"{upload_id}: {decision.status} then, refused now ({error})")
            continue
        report.decisions += 1
        now = ledger.status_of(conn, upload_id)[0]
        if now != decision.status:
            report.differing.append(f"{upload_id}: {decision.status} then, {now} now")
        progress(f"{upload_id}: {now}")
    for upload_id, upload in sorted(uploads.items(), key=lambda u: u[1].received_at):
        if upload_id not in recorded:
            ledger.record_received(conn, archive_root, upload, upload.received_at, "rebuild")
            report.undecided.append(upload_id)
    return report


def _replay(
    conn: Connection,
    upload: Upload,
    decision: Decision,
    settings: LeaSettings,
) -> None:
    """One decision made again, as the run made it, at its own time."""
    now = decision.decided_at
    if upload.refused:
        record_rejections(conn, upload, rejection_frame(refusal_rejections(upload)), now)
        ledger.reject_received(conn, upload.upload_id, decision)
        return
    validated = validate_upload(
        upload.lea_id,
        upload.read_files(),
        upload.received_at.date(),
        class_types=settings.oneroster_class_types,
        taken_logins=functools.partial(other_leas_logins, conn, upload.lea_id),
    )
    record_rejections(conn, upload, validated.rejections, now)
    plan = plan_upload(
        conn,
        upload,
        validated,
        settings,
        held_upload=decision.operator or "hold",
        today=now.date(),
        reapply=True,  # as roster_diff's default: a replayed upload is decided again
    )
    if plan.decision == "held" and plan.held_by == "safeguard":
        ledger.hold(conn, upload.upload_id, Decision("held", plan.reason, now, "safeguard"))
        return
    apply_upload(conn, upload, validated, plan, now, today=now.date())
