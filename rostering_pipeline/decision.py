"""What the pipeline decides about an upload: the types every stage shares.

Receiving can reject an upload, planning decides the rest, applying records the decision, and
the report and the outbox tell the LEA. They all speak of the same decision, so its types live
here, below every stage: no stage imports a later one to describe it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from .lea_settings import DEFAULT_SETTINGS, LeaSettings

#: Why a record missing from the upload is kept: its row was rejected, it hangs off a
#: rejected row (a rejected class's enrollments), or a kept row names it (a kept class's
#: teacher).
WHY = "_kept_because"


@dataclass(frozen=True)
class Decision:
    """One decision on an upload, as the manifest keeps it."""

    status: str
    reason: str | None
    decided_at: datetime
    held_by: str | None = None
    #: `release` or `reject` when an operator decided on a held upload.
    operator: str | None = None
    #: The LEA's settings the decision was made under (LeaSettings as JSON).
    settings: dict = field(default_factory=dict)
    #: `run`: the upload's own run decided; `newer upload <id>`: decided by another's apply.
    by: str = "run"
    #: Adds, updates and drops per entity the decision applied (none when nothing applied).
    changes: dict | None = None

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "decided_at": self.decided_at.isoformat(),
            "held_by": self.held_by,
            "operator": self.operator,
            "settings": self.settings,
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: dict) -> Decision:
        return cls(
            data["status"],
            data.get("reason"),
            datetime.fromisoformat(data["decided_at"]),
            data.get("held_by"),
            data.get("operator"),
            data.get("settings") or {},
            data.get("by", "run"),
        )


@dataclass
class EntityDiff:
    """Changes to one entity; `rows` holds the new version of every added or updated row."""

    entity: str
    rows: pl.DataFrame
    drops: pl.DataFrame
    changes: pl.DataFrame
    withheld_drops: int = 0  # drops not applied because the LEA is in additions-only mode
    #: Records missing from the upload but kept, by key, with why (`WHY`): never read as drops.
    kept: pl.DataFrame | None = None
    #: The keys of the applied rows that `rows` replace (its updates; the rest of `rows` are
    #: adds, not in the roster). None: not known, every row of `rows` may replace one.
    replaced: pl.DataFrame | None = None

    def count(self, change: str) -> int:
        return self.changes.filter(pl.col("change") == change).height

    @property
    def counts(self) -> dict[str, int]:
        return {c: self.count(c) for c in ("add", "update", "drop")}


@dataclass
class UploadDecision:
    """What the pipeline decides about one upload, with the planned effect on its LEA's roster
    (plan_upload makes it; apply_upload records it; the report and the outbox tell it)."""

    upload_id: str
    lea_id: str
    decision: str  # apply, rejected, duplicate, superseded, held, or an earlier final status
    reason: str
    base_upload_id: str | None
    entities: dict[str, EntityDiff] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    held_upload: str = "hold"
    held_by: str | None = None  # "safeguard" or "blackout" when the decision is "held"
    settings: LeaSettings = DEFAULT_SETTINGS
    reapplied: bool = False  # an upload decided before, decided again (see plan_upload)
    #: Set by apply_upload: the decision it wrote, and the held uploads the apply superseded
    #: (lea_id, upload_id), for their manifests once the transaction has committed.
    recorded: Decision | None = None
    superseded: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        return {e: d.counts for e, d in self.entities.items()}

    def total(self, change: str) -> int:
        return sum(d.count(change) for d in self.entities.values())
