import os
from pathlib import Path

import dagster as dg

from rostering_pipeline.lea_settings import (
    DEFAULT_PATH,
    LeaSettings,
    LeaSettingsResource,
    load_settings,
)


def settings_table(settings: dict[str, LeaSettings]) -> str:
    rows = [
        "| LEA | mode | safeguard (fraction/min count) | blackouts | OneRoster class types |",
        "|---|---|---|---|---|",
    ]
    for lea_id, s in settings.items():
        safeguard = ", ".join(
            f"{kind} {t.max_drop_fraction:.0%}/{t.min_drop_count}"
            for kind, t in s.safeguard.items()
        )
        blackouts = ", ".join(f"{b.start} to {b.end}" for b in s.blackouts) or "-"
        rows.append(
            f"| {lea_id} | {s.mode} | {safeguard or 'built-in 10%/5'} | {blackouts} | "
            f"{', '.join(s.oneroster_class_types)} |"
        )
    return "\n".join(rows)


@dg.definitions
def settings_defs() -> dg.Definitions:
    """Reads and validates the settings file when the code location loads: a bad file stops
    the load with the LEA and key named."""
    loaded = load_settings(Path(os.environ.get("ROSTERING_LEA_SETTINGS", DEFAULT_PATH)))

    @dg.asset(
        group_name="settings",
        kinds={"toml"},
        owners=["team:rostering"],
        metadata={"settings_at_load": dg.MetadataValue.md(settings_table(loaded))},
    )
    def lea_settings_in_force(lea_settings: LeaSettingsResource) -> dg.MaterializeResult:
        """The per-LEA settings operators keep in deploy/lea_settings.toml, as runs read them:
        mode, safeguard thresholds, blackouts and OneRoster class types (defaults for LEAs
        not listed). Materialize to refresh after editing the file."""
        settings = lea_settings.all()
        return dg.MaterializeResult(
            metadata={
                "settings": dg.MetadataValue.md(settings_table(settings)),
                "leas_listed": len(settings) - 1,
                "path": dg.MetadataValue.path(lea_settings.path),
            }
        )

    return dg.Definitions(assets=[lea_settings_in_force])
