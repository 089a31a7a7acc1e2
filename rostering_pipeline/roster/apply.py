"""Applying a planned diff: all of an upload in one transaction, or none of it."""

from __future__ import annotations

from datetime import date, datetime

from .. import ledger
from ..decision import Decision, UploadDecision
from ..upload_spec.validate import ValidatedUpload
from ..uploads import Upload
from ..warehouse import Connection, transaction
from ..warehouse import uploads as upload_rows
from ..warehouse.roster import write_accounts, write_entity_diff
from .plan import plan_upload


def apply_upload(
    conn: Connection,
    upload: Upload,
    validated: ValidatedUpload,
    planned: UploadDecision,
    now: datetime,
    today: date | None = None,
) -> UploadDecision:
    """Write the upload's changes and its final status in one transaction.

    If another upload of the LEA was applied since `planned` was computed, the plan is made
    again inside the transaction, so an older roster is never the base of a write.
    """
    with transaction(conn, lea_id=upload.lea_id):
        last = upload_rows.last_applied(conn, upload.lea_id)
        if (last[0] if last else None) != planned.base_upload_id:
            planned = plan_upload(
                conn,
                upload,
                validated,
                planned.settings,
                planned.held_upload,
                today,
                planned.reapplied,
            )
        if planned.decision == "apply":
            for diff in planned.entities.values():
                write_entity_diff(conn, upload.lea_id, upload.upload_id, diff, now)
            write_accounts(conn, upload.lea_id, upload.upload_id, planned.entities["staff"], now)
        status = "applied" if planned.decision == "apply" else planned.decision
        planned.recorded = Decision(
            status,
            planned.reason or None,
            now,
            planned.held_by,
            operator=None if planned.held_upload == "hold" else planned.held_upload,
            settings=planned.settings.model_dump(mode="json"),
            changes=planned.counts() if status == "applied" else None,
        )
        if not ledger.decide(conn, upload.upload_id, planned.recorded, again=planned.reapplied):
            planned.recorded = None  # an earlier decision stands: nothing new to record
        if status == "applied":
            planned.superseded = ledger.supersede_held(conn, upload, now)
    return planned
