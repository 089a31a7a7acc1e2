"""Deciding what an upload does to the roster: apply its diff, or hold, reject or skip it."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from ..upload_spec.files import ENTITIES
from ..upload_spec.validate import ValidatedUpload
from ..uploads import Upload
from .diff import EntityDiff, diff_entity, protected_keys
from .store import last_applied_upload, read_roster

FINAL_STATUSES = ("applied", "rejected", "duplicate", "superseded")


@dataclass(frozen=True)
class Safeguard:
    """Hold an upload dropping more than `max_drop_fraction` of a kind AND more than
    `min_drop_count` records of it (so a 3-student LEA can still lose one student)."""

    max_drop_fraction: float = 0.10
    min_drop_count: int = 5

    def trips(self, drops: int, active: int) -> bool:
        return drops > self.min_drop_count and drops > self.max_drop_fraction * active


DEFAULT_SAFEGUARD = Safeguard()


@dataclass
class RosterDiff:
    """The planned effect of one upload on its LEA's roster."""

    upload_id: str
    lea_id: str
    decision: str  # apply, rejected, duplicate, superseded, held, or an earlier final status
    reason: str
    base_upload_id: str | None
    entities: dict[str, EntityDiff] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    held_upload: str = "hold"

    def counts(self) -> dict[str, dict[str, int]]:
        return {e: d.counts for e, d in self.entities.items()}

    def total(self, change: str) -> int:
        return sum(d.count(change) for d in self.entities.values())


def plan_upload(
    conn: duckdb.DuckDBPyConnection,
    upload: Upload,
    validated: ValidatedUpload,
    safeguard: Safeguard = DEFAULT_SAFEGUARD,
    held_upload: str = "hold",
) -> RosterDiff:
    """Compare an upload with the applied roster and decide what happens to it.

    `held_upload` is an operator's word on an upload the safeguard held: `release` applies
    it despite its drops, `reject` refuses it; `hold` (the default) keeps it held.
    """
    status = conn.execute(
        "select status, reason from ingest.uploads where upload_id = ?", [upload.upload_id]
    ).fetchone()
    last = last_applied_upload(conn, upload.lea_id)
    base = last[0] if last else None

    def decided(decision: str, reason: str) -> RosterDiff:
        return RosterDiff(
            upload.upload_id, upload.lea_id, decision, reason, base, held_upload=held_upload
        )

    if status and status[0] in FINAL_STATUSES:
        return decided(status[0], status[1] or f"already {status[0]}")
    was_held = bool(status and status[0] == "held")
    if was_held and held_upload == "reject":
        return decided("rejected", "an operator rejected the upload after the safeguard held it")
    if not validated.accepted:
        return decided("rejected", "the upload has faults that stop it as a whole; see rejections")
    if last and upload.received_at < last[1]:
        return decided("superseded", f"an upload received later ({last[0]}) is already applied")
    if last and _fingerprint(conn, last[0]) == upload.fingerprint:
        return decided("duplicate", f"the same files as {last[0]}, already applied")

    current = read_roster(conn, upload.lea_id)
    diffs = {
        entity: diff_entity(
            entity,
            current[entity],
            validated.tables[entity],
            protected_keys(entity, validated.rejected_keys, current[entity]),
        )
        for entity in ENTITIES
    }
    active = {entity: current[entity].height for entity in ENTITIES}
    plan = RosterDiff(
        upload.upload_id, upload.lea_id, "apply", "", base, diffs, active, held_upload
    )
    tripped = [
        f"{d.count('drop')} of {active[e]} {e}"
        for e, d in diffs.items()
        if safeguard.trips(d.count("drop"), active[e])
    ]
    if tripped and was_held and held_upload == "release":
        plan.reason = f"an operator released the upload held for dropping {', '.join(tripped)}"
    elif tripped:
        plan.decision = "held"
        plan.reason = (
            f"the upload would drop {', '.join(tripped)}, more than the safeguard allows "
            f"({safeguard.max_drop_fraction:.0%} and more than {safeguard.min_drop_count})"
        )
    return plan


def _fingerprint(conn: duckdb.DuckDBPyConnection, upload_id: str) -> str | None:
    row = conn.execute(
        "select fingerprint from ingest.uploads where upload_id = ?", [upload_id]
    ).fetchone()
    return row[0] if row else None
