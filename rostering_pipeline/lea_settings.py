"""Per-LEA settings kept by operators (UPLOAD_SPEC "Per-LEA settings"), in one TOML file.

The file is read again for every run, so an edit takes effect on the next upload without a
restart; it is also validated when the code location loads, so a bad file is refused early
with the LEA and the key named.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .upload_spec.files import ENTITIES
from .upload_spec.formats.oneroster import DEFAULT_CLASS_TYPES

DEFAULT_PATH = "deploy/lea_settings.toml"


class Threshold(BaseModel):
    """Hold an upload that drops more than `max_drop_fraction` of an LEA's active records of
    a kind AND more than `min_drop_count` of them (a 3-student LEA may still lose one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_drop_fraction: float = Field(default=0.10, ge=0, le=1)
    min_drop_count: int = Field(default=5, ge=0)

    def trips(self, drops: int, active: int) -> bool:
        return drops > self.min_drop_count and drops > self.max_drop_fraction * active


class Blackout(BaseModel):
    """Uploads received from `start` to `end` (inclusive) are validated but held."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class LeaSettings(BaseModel):
    """What operators can steer for one LEA; unset keys take the file's [defaults]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["complete", "additions_only"] = "complete"
    safeguard: dict[str, Threshold] = Field(default_factory=dict)
    blackouts: tuple[Blackout, ...] = ()
    oneroster_class_types: tuple[str, ...] = DEFAULT_CLASS_TYPES

    @model_validator(mode="after")
    def _known_entities(self) -> LeaSettings:
        unknown = sorted(set(self.safeguard) - {*ENTITIES, "all"})
        if unknown:
            raise ValueError(f"safeguard names unknown kinds {unknown}; use {list(ENTITIES)}")
        return self

    def threshold(self, entity: str) -> Threshold:
        return self.safeguard.get(entity) or self.safeguard.get("all") or Threshold()

    def blackout_on(self, day: date) -> Blackout | None:
        return next((b for b in self.blackouts if b.covers(day)), None)


DEFAULT_SETTINGS = LeaSettings()


class LeaSettingsError(ValueError):
    """The settings file is wrong; the message names the file, the LEA and the key."""


def load_settings(path: Path) -> dict[str, LeaSettings]:
    """Every LEA listed in the file, merged over [defaults]; key "defaults" holds those."""
    if not path.exists():
        return {"defaults": DEFAULT_SETTINGS}
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise LeaSettingsError(f"{path}: not valid TOML: {error}") from None
    defaults_raw = raw.pop("defaults", {})
    settings = {"defaults": _parse(path, "defaults", defaults_raw)}
    for lea_id, values in raw.items():
        if not (lea_id.isdigit() and len(lea_id) == 6) or not isinstance(values, dict):
            raise LeaSettingsError(
                f"{path}: [{lea_id}] is not an LEA: sections are [defaults] or a 6-digit lea_id "
                'in quotes, e.g. ["015901"]'
            )
        merged = {**defaults_raw, **values}
        merged["safeguard"] = {**defaults_raw.get("safeguard", {}), **values.get("safeguard", {})}
        settings[lea_id] = _parse(path, lea_id, merged)
    return settings


def _parse(path: Path, section: str, values: dict) -> LeaSettings:
    try:
        return LeaSettings.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(section)'}: {e['msg']}"
            for e in error.errors()
        )
        where = "the defaults" if section == "defaults" else f"LEA {section}"
        raise LeaSettingsError(f"{path}: settings for {where} are invalid: {problems}") from None


class LeaSettingsResource(dg.ConfigurableResource):
    """Reads the per-LEA settings file at each use, so edits apply to the next upload."""

    path: str = DEFAULT_PATH

    def for_lea(self, lea_id: str) -> LeaSettings:
        settings = load_settings(Path(self.path))
        return settings.get(lea_id, settings["defaults"])

    def all(self) -> dict[str, LeaSettings]:
        return load_settings(Path(self.path))
