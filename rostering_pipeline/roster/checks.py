"""Guarantees checked after an apply, in the warehouse itself."""

from __future__ import annotations

import duckdb

from ..upload_spec.integrity import REFERENCES
from ..upload_spec.validate import ValidatedUpload
from .store import diff_with_roster


def reconcile(conn: duckdb.DuckDBPyConnection, validated: ValidatedUpload) -> dict[str, list[str]]:
    """Keys where the applied roster differs from the validated snapshot (minus rejections):
    the diff of the snapshot against the roster must be empty after an apply."""
    differing = {}
    for entity, diff in diff_with_roster(conn, validated).items():
        keys = diff.changes.get_column("key").sort().to_list()
        if keys:
            differing[entity] = keys
    return differing


def dangling_references(conn: duckdb.DuckDBPyConnection, lea_id: str) -> dict[str, int]:
    """Applied rows pointing at a row of the same LEA that is not in the roster."""
    counts = {}
    for ref in REFERENCES:
        n = conn.execute(
            f"select count(*) from roster.{ref.entity} r where r.lea_id = ?"
            f" and r.{ref.column} is not null and not exists"
            f" (select 1 from roster.{ref.target} t where t.lea_id = r.lea_id"
            f" and t.{ref.target_column} = r.{ref.column})",
            [lea_id],
        ).fetchone()[0]
        if n:
            counts[f"{ref.entity}.{ref.column}"] = n
    return counts


def key_sample(keys: dict[str, list[str]], limit: int = 20) -> dict[str, list[str]]:
    return {entity: values[:limit] for entity, values in keys.items()}
