"""A validated upload as frames between steps (the validate assets' outputs, the roster
assets' inputs): accepted rows plus the keys of rejected ones. The validating itself is
upload_spec/validate.py.

A rejected row's key still matters downstream (a rejected student is never read as a drop),
so each entity's frame carries both, told apart by `_rejected`.
"""

from __future__ import annotations

import polars as pl

from .upload_spec.files import BY_ENTITY, ENTITIES
from .upload_spec.validate import ValidatedUpload

REJECTED = "_rejected"


def to_frames(validated: ValidatedUpload) -> dict[str, pl.DataFrame]:
    frames = {}
    for entity in ENTITIES:
        spec = BY_ENTITY[entity]
        accepted = validated.tables.get(entity)
        if accepted is None:
            accepted = pl.DataFrame(
                schema={**{c: pl.String for c in spec.columns}, "_line": pl.Int64}
            )
        rejected = validated.rejected_keys.get(
            entity, pl.DataFrame(schema={k: pl.String for k in spec.key})
        )
        frames[entity] = pl.concat(
            [
                accepted.with_columns(pl.lit(False).alias(REJECTED)),
                rejected.with_columns(pl.lit(True).alias(REJECTED)),
            ],
            how="diagonal_relaxed",
        )
    return frames


def from_frames(
    lea_id: str, frames: dict[str, pl.DataFrame], rejections: pl.DataFrame
) -> ValidatedUpload:
    tables = {e: f.filter(~pl.col(REJECTED)).drop(REJECTED) for e, f in frames.items()}
    keys = {e: f.filter(pl.col(REJECTED)).select(BY_ENTITY[e].key) for e, f in frames.items()}
    accepted = rejections.filter(pl.col("level") == "upload").is_empty()
    return ValidatedUpload(lea_id, tables if accepted else {}, rejections, keys)
