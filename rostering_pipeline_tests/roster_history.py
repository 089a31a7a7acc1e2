"""The roster of an LEA as it was after any upload, rebuilt from roster.changes alone: the
invariant tests check that the change log alone gives back every applied roster."""

from __future__ import annotations

import json

import polars as pl

from rostering_pipeline.roster.diff import KEY_SEPARATOR
from rostering_pipeline.upload_spec.files import BY_ENTITY, ENTITIES
from rostering_pipeline.warehouse import Connection
from rostering_pipeline.warehouse import uploads as upload_rows
from rostering_pipeline.warehouse.reports import changes_until, first_change_at


def roster_as_of(conn: Connection, lea_id: str, upload_id: str) -> dict[str, pl.DataFrame]:
    """Replay every change of the LEA up to and including `upload_id`, in applied order.

    Values come back as text (dates as YYYY-MM-DD), as roster.changes records them.
    """
    cutoff = first_change_at(conn, lea_id, upload_id)
    if cutoff is None:
        cutoff = upload_rows.decided_at(conn, lea_id, upload_id)
        if cutoff is None:
            raise KeyError(f"LEA {lea_id} has no upload {upload_id} in ingest.uploads")
        cutoff = cutoff[0]
    changes = changes_until(conn, lea_id, cutoff, ENTITIES)
    state: dict[str, dict[str, dict[str, str | None]]] = {e: {} for e in ENTITIES}
    for entity, key, change, new_values in changes:
        rows = state[entity]
        if change == "drop":
            rows.pop(key, None)
            continue
        values = json.loads(new_values) if new_values else {}
        if change == "add":
            rows[key] = _key_columns(entity, key) | values
        else:
            rows.setdefault(key, _key_columns(entity, key)).update(values)
    return {entity: _frame(entity, rows) for entity, rows in state.items()}


def _key_columns(entity: str, key: str) -> dict[str, str | None]:
    return dict(zip(BY_ENTITY[entity].key, key.split(KEY_SEPARATOR), strict=True))


def _frame(entity: str, rows: dict[str, dict[str, str | None]]) -> pl.DataFrame:
    spec = BY_ENTITY[entity]
    schema = {c: pl.String for c in spec.columns}
    frame = (
        pl.DataFrame(list(rows.values()), schema=schema) if rows else pl.DataFrame(schema=schema)
    )
    return frame.sort(list(spec.key))
