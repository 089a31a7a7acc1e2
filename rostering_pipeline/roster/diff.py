"""What an upload changes: adds, updates and drops per entity against the applied roster."""

from __future__ import annotations

import polars as pl

from ..decision import WHY, EntityDiff
from ..upload_spec.files import BY_ENTITY, ENTITIES, UploadFile
from ..upload_spec.integrity import REFERENCES
from ..upload_spec.reading import LINE

KEY_SEPARATOR = "|"
CHANGE_SCHEMA = {
    "key": pl.String,
    "change": pl.String,
    "old_values": pl.String,
    "new_values": pl.String,
    "source_line": pl.Int64,
}
#: A rejected row of a parent keeps the rows that hang off it (its enrollments, say): per
#: entity, the (column, parent) of each reference that is part of the entity's key.
DEPENDENT_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    entity: links
    for entity in ENTITIES
    if (
        links := tuple(
            (ref.column, ref.target)
            for ref in REFERENCES
            if ref.entity == entity and ref.column in BY_ENTITY[entity].key
        )
    )
}


def key_expr(spec: UploadFile) -> pl.Expr:
    return pl.concat_str([pl.col(k) for k in spec.key], separator=KEY_SEPARATOR).alias("key")


def diff_entity(
    entity: str,
    current: pl.DataFrame,
    snapshot: pl.DataFrame,
    protected: pl.DataFrame,
    *,
    drops_allowed: bool = True,
) -> EntityDiff:
    """Compare the applied rows of one entity with an upload's accepted rows.

    `protected` lists keys whose rows were rejected: a rejected row is never read as a drop.
    """
    spec = BY_ENTITY[entity]
    key, values = list(spec.key), [c for c in spec.columns if c not in spec.key]
    cur = current.select(spec.columns).with_columns(pl.lit(True).alias("_current"))
    new = snapshot.select([*spec.columns, LINE])
    changed = {c: pl.col(c).ne_missing(pl.col(f"{c}_new")) for c in values}
    if values:
        joined = cur.join(new, on=key, how="full", coalesce=True, suffix="_new")
        in_cur, in_new = pl.col("_current").is_not_null(), pl.col(LINE).is_not_null()
        adds = joined.filter(~in_cur & in_new)
        updates = joined.filter(in_cur & in_new & pl.any_horizontal(list(changed.values())))
        drops = joined.filter(in_cur & ~in_new)
    else:
        # Only keys (enrollments, co-teachers): nothing can be updated, and two anti-joins
        # skip materialising a join of every row (millions in a large LEA).
        adds = new.join(cur.select(key), on=key, how="anti")
        updates = adds.head(0)
        drops = cur.join(new.select(key), on=key, how="anti")
    kept = drops.select(key).join(protected.unique(key, keep="first"), on=key, how="inner")
    drops = drops.join(protected.select(key), on=key, how="anti")
    withheld = 0 if drops_allowed else drops.height
    if not drops_allowed:
        drops = drops.head(0)

    new_row = [pl.col(f"{c}_new").alias(c) for c in values]
    rows = pl.concat([adds, updates]).select([*key, *new_row, LINE])
    changes = pl.concat(
        [
            adds.select(
                key_expr(spec),
                pl.lit("add").alias("change"),
                pl.lit(None, pl.String).alias("old_values"),
                _json({c: pl.col(f"{c}_new") for c in values}),
                pl.col(LINE).alias("source_line"),
            ),
            updates.select(
                key_expr(spec),
                pl.lit("update").alias("change"),
                _json({c: pl.col(c) for c in values}, changed).alias("old_values"),
                _json({c: pl.col(f"{c}_new") for c in values}, changed),
                pl.col(LINE).alias("source_line"),
            ),
            drops.select(
                key_expr(spec),
                pl.lit("drop").alias("change"),
                _json({c: pl.col(c) for c in values}).alias("old_values"),
                pl.lit(None, pl.String).alias("new_values"),
                pl.lit(None, pl.Int64).alias("source_line"),
            ),
        ]
    ).cast(CHANGE_SCHEMA)
    return EntityDiff(entity, rows, drops.select(key), changes, withheld, kept, updates.select(key))


def _json(columns: dict[str, pl.Expr], only_when: dict[str, pl.Expr] | None = None) -> pl.Expr:
    """A JSON object of the columns (as text); with `only_when`, only the changed ones."""
    if not columns:
        return pl.lit("{}").alias("new_values")
    parts = []
    for name, expr in columns.items():
        member = pl.struct(expr.cast(pl.String).alias(name)).struct.json_encode().str.slice(1)
        member = member.str.head(-1)
        parts.append(member if only_when is None else pl.when(only_when[name]).then(member))
    body = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.concat_str([pl.lit("{"), body, pl.lit("}")]).alias("new_values")


def kept_keys(
    rejected: dict[str, pl.DataFrame], applied: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Keys of each entity that must not be dropped, with why: a rejected row is never read
    as a drop; the applied rows that hang off a rejected parent stay (a rejected student
    keeps their enrollments); and a kept row keeps what its applied version names (a kept
    class keeps its teacher and campus), until the LEA fixes the row.

    `applied` holds, per entity, the applied rows the upload does not repeat (the drop
    candidates): only those can need keeping."""
    kept = {e: _keys(e, rejected.get(e), "rejected") for e in ENTITIES}
    for entity, links in DEPENDENT_KEYS.items():
        for column, parent in links:
            ids = kept[parent].get_column(BY_ENTITY[parent].key[0]).implode()
            hanging = applied[entity].filter(pl.col(column).is_in(ids))
            kept[entity] = _with(kept[entity], _keys(entity, hanging, "hangs off a rejected row"))
    for _ in ENTITIES:  # a chain is at most as long as the entities: enrollment→class→staff→campus
        grew = False
        for ref in REFERENCES:
            key = list(BY_ENTITY[ref.entity].key)
            rows = applied[ref.entity].join(kept[ref.entity].select(key), on=key, how="semi")
            named = rows.select(pl.col(ref.column).alias(ref.target_column)).drop_nulls()
            named = named.join(kept[ref.target], on=ref.target_column, how="anti")
            if not named.is_empty():
                kept[ref.target] = _with(
                    kept[ref.target], _keys(ref.target, named, "named by a kept row")
                )
                grew = True
        if not grew:
            break
    return kept


def _keys(entity: str, rows: pl.DataFrame | None, why: str) -> pl.DataFrame:
    key = list(BY_ENTITY[entity].key)
    if rows is None:
        return pl.DataFrame(schema={**{k: pl.String for k in key}, WHY: pl.String})
    return rows.select(*key, pl.lit(why).alias(WHY)).unique(key, keep="first", maintain_order=True)


def _with(kept: pl.DataFrame, more: pl.DataFrame) -> pl.DataFrame:
    key = [c for c in kept.columns if c != WHY]
    return pl.concat([kept, more.join(kept, on=key, how="anti")])
