"""An upload's diff against the LEA's applied roster, read from the warehouse."""

from __future__ import annotations

from ..decision import EntityDiff
from ..upload_spec.files import ENTITIES
from ..upload_spec.validate import ValidatedUpload
from ..warehouse import Connection
from ..warehouse.roster import differing_rows
from .diff import diff_entity, kept_keys


def diff_with_roster(
    conn: Connection, validated: ValidatedUpload, *, drops_allowed: bool = True
) -> dict[str, EntityDiff]:
    """Each entity's changes from the LEA's applied roster to the validated upload; a
    rejected row, the rows that hang off it and the rows it names are never read as drops
    (`kept_keys`). Only the rows that differ leave the warehouse (`differing_rows`)."""
    differing = {
        entity: differing_rows(conn, validated.lea_id, entity, validated.tables[entity])
        for entity in ENTITIES
    }
    kept = kept_keys(validated.rejected_keys, {e: d[0] for e, d in differing.items()})
    return {
        entity: diff_entity(entity, current, snapshot, kept[entity], drops_allowed=drops_allowed)
        for entity, (current, snapshot) in differing.items()
    }
