"""Guarantees checked after an apply, in the warehouse itself."""

from __future__ import annotations

from ..upload_spec.validate import ValidatedUpload
from ..warehouse import Connection
from ..warehouse.roster import dangling_counts
from .store import diff_with_roster


def reconcile(conn: Connection, validated: ValidatedUpload) -> dict[str, list[str]]:
    """Keys where the applied roster differs from the validated snapshot (minus rejections):
    the diff of the snapshot against the roster must be empty after an apply."""
    differing = {}
    for entity, diff in diff_with_roster(conn, validated).items():
        keys = diff.changes.get_column("key").sort().to_list()
        if keys:
            differing[entity] = keys
    return differing


def dangling_references(conn: Connection, lea_id: str) -> dict[str, int]:
    """Applied rows pointing at a row of the same LEA that is not in the roster."""
    return dangling_counts(conn, lea_id)


def key_sample(keys: dict[str, list[str]], limit: int = 20) -> dict[str, list[str]]:
    return {entity: values[:limit] for entity, values in keys.items()}
