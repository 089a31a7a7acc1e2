"""Deciding what an upload does to the roster: apply its diff, or hold, reject or skip it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ..decision import UploadDecision
from ..lea_settings import DEFAULT_SETTINGS, LeaSettings
from ..ledger import FINAL_STATUSES
from ..upload_spec.validate import ValidatedUpload
from ..uploads import Upload
from ..warehouse import Connection
from ..warehouse import uploads as upload_rows
from ..warehouse.roster import applied_counts
from .store import diff_with_roster


def plan_upload(
    conn: Connection,
    upload: Upload,
    validated: ValidatedUpload,
    settings: LeaSettings = DEFAULT_SETTINGS,
    held_upload: str = "hold",
    today: date | None = None,
    reapply: bool = False,
) -> UploadDecision:
    """Compare an upload with the applied roster and decide what happens to it.

    `held_upload` is an operator's word on an upload the safeguard held: `release` applies
    it despite its drops, `reject` refuses it; `hold` (the default) keeps it held.
    With `reapply`, an upload already applied or rejected that is still the LEA's latest is
    decided again under today's rules (a backfill after a rule change); the diff against
    the roster makes this a no-op when nothing changed.
    """
    today = today or datetime.now(UTC).date()
    status = upload_rows.status_of(conn, upload.upload_id)
    last = upload_rows.last_applied(conn, upload.lea_id)
    base = last[0] if last else None

    def decided(decision: str, reason: str, held_by: str | None = None) -> UploadDecision:
        return UploadDecision(
            upload.upload_id,
            upload.lea_id,
            decision,
            reason,
            base,
            held_upload=held_upload,
            held_by=held_by,
            settings=settings,
            reapplied=again,
        )

    # An operator's decision is final for that upload: a replay never decides it again.
    again = bool(
        reapply
        and status
        and status[0] in ("applied", "rejected")
        and status[3] is None
        and (last is None or upload.received_at >= last[1])
    )
    if status and status[0] in FINAL_STATUSES and not again:
        return decided(status[0], status[1] or f"already {status[0]}")
    released = bool(status and status[0] == "held" and status[2] == "safeguard")
    if released and held_upload == "reject":
        return decided("rejected", "an operator rejected the upload after the safeguard held it")
    if not validated.accepted:
        return decided("rejected", "the upload has faults that stop it as a whole; see rejections")
    if last and upload.received_at < last[1]:
        return decided("superseded", f"an upload received later ({last[0]}) is already applied")
    if last and not again and upload_rows.fingerprint_of(conn, last[0]) == upload.fingerprint:
        return decided("duplicate", f"the same files as {last[0]}, already applied")
    blackout = settings.blackout_on(upload.received_at.date())
    if blackout and today <= blackout.end:
        return decided(
            "held",
            f"received during the sync blackout {blackout.start} to {blackout.end}; the newest "
            "upload received in the blackout is applied when it ends",
            "blackout",
        )

    diffs = diff_with_roster(conn, validated, drops_allowed=settings.mode == "complete")
    active = applied_counts(conn, upload.lea_id)
    plan = decided("apply", "")
    plan.entities, plan.active = diffs, active
    tripped = [
        f"{d.count('drop')} of {active[e]} {e}"
        for e, d in diffs.items()
        if settings.threshold(e).trips(d.count("drop"), active[e])
    ]
    if tripped and released and held_upload == "release":
        plan.reason = f"an operator released the upload held for dropping {', '.join(tripped)}"
    elif tripped:
        plan.decision, plan.held_by = "held", "safeguard"
        plan.reason = f"the upload would drop {', '.join(tripped)}, more than the safeguard allows"
    elif again:
        plan.reason = "decided again under the current rules (a backfill or replay)"
    elif settings.mode == "additions_only":
        withheld = sum(d.withheld_drops for d in diffs.values())
        plan.reason = f"additions-only mode: {withheld} records missing from the upload were kept"
    return plan
