"""Applying a planned diff: all of an upload in one transaction, or none of it."""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from ..failpoints import failpoint
from ..upload_spec.validate import ValidatedUpload
from ..uploads import Upload
from .plan import RosterDiff, plan_upload
from .store import last_applied_upload, write_accounts, write_diff


def apply_upload(
    conn: duckdb.DuckDBPyConnection,
    upload: Upload,
    validated: ValidatedUpload,
    planned: RosterDiff,
    now: datetime,
    today: date | None = None,
) -> RosterDiff:
    """Write the upload's changes and its final status in one transaction.

    If another upload of the LEA was applied since `planned` was computed, the plan is made
    again inside the transaction, so an older roster is never the base of a write.
    """
    conn.execute("begin transaction")
    try:
        last = last_applied_upload(conn, upload.lea_id)
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
        failpoint("apply.begin")
        if planned.decision == "apply":
            for diff in planned.entities.values():
                write_diff(conn, upload.lea_id, upload.upload_id, diff, now)
                failpoint("apply.mid")
            write_accounts(conn, upload.lea_id, planned.entities["staff"], now)
        status = "applied" if planned.decision == "apply" else planned.decision
        conn.execute(
            "update ingest.uploads set status = ?, reason = ?, held_by = ?, decided_at = ?"
            " where upload_id = ? and (? or status not in ('applied', 'rejected', 'duplicate',"
            " 'superseded'))",
            [
                status,
                planned.reason or None,
                planned.held_by,
                now,
                upload.upload_id,
                planned.reapplied and status in ("applied", "rejected"),
            ],
        )
        if status == "applied":
            conn.execute(
                "update ingest.uploads set status = 'superseded', decided_at = ?,"
                " reason = 'held, then replaced by the newer upload ' || ?"
                " where lea_id = ? and status = 'held' and received_at < ?",
                [now, upload.upload_id, upload.lea_id, upload.received_at],
            )
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    return planned
