"""Deployment configuration read from the environment, with local defaults for the demo."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from . import places
from .sftp import SftpResource
from .warehouse import DEFAULT_PATH as DEFAULT_WAREHOUSE
from .warehouse import WarehouseResource

ENV_PREFIX = "ROSTERING_"
REPO = places.REPO


DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
#: An inbox without a `ready` file is a complete upload once unchanged for this long.
DEFAULT_QUIET_PERIOD_SECONDS = 120
DEFAULT_ARCHIVE = str(places.DEFAULT_ARCHIVE)
#: The state's clock: schedules (the morning freshness check, the nightly compaction) run on it.
STATE_TIMEZONE = "America/Chicago"


class SettingError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def env_number(name: str, default: float, *, minimum: float = 0, integer: bool = True) -> float:
    """A numeric setting; a typo stops the code location loading with the variable named,
    rather than surfacing later as a confusing failure inside a run."""
    raw = env(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise SettingError(
            f"{ENV_PREFIX}{name}={raw!r} is not a {'whole ' if integer else ''}number; "
            f"unset it for the default ({default}) or give a number."
        ) from None
    if value < minimum:
        raise SettingError(f"{ENV_PREFIX}{name}={raw!r} must be at least {minimum}.")
    return value


class IngestSettings(dg.ConfigurableResource):
    """Where uploads are archived, when an inbox counts as a complete upload, and how large
    a file the pipeline accepts (a bound on what an LEA can make it download and keep)."""

    archive_root: str = DEFAULT_ARCHIVE
    quiet_period_seconds: int = DEFAULT_QUIET_PERIOD_SECONDS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


def sftp_from_env() -> SftpResource:
    """SFTP settings; the password comes through an EnvVar so it is never stored in config,
    and a private key file must live outside the repository, where no commit can carry it."""
    key_file = env("SFTP_KEY_FILE")
    if key_file and Path(key_file).resolve().is_relative_to(REPO):
        raise SettingError(
            f"{ENV_PREFIX}SFTP_KEY_FILE points inside the repository ({key_file}); keep the "
            "private key outside it (e.g. /etc/rostering/id_ed25519, mode 600)."
        )
    return SftpResource(
        host=env("SFTP_HOST", "127.0.0.1") or "127.0.0.1",
        port=int(env("SFTP_PORT", "22") or 22),
        username=env("SFTP_USER", "rostering") or "rostering",
        password=dg.EnvVar(ENV_PREFIX + "SFTP_PASSWORD") if env("SFTP_PASSWORD") else None,
        private_key_path=key_file,
        known_hosts_path=env("SFTP_KNOWN_HOSTS"),
        host_key=env("SFTP_HOST_KEY"),
        retries=int(env_number("SFTP_RETRIES", 3)),
        retry_backoff_seconds=env_number("SFTP_RETRY_BACKOFF_SECONDS", 1.0, integer=False),
    )


def warehouse_from_env() -> WarehouseResource:
    """The DuckDB file (ROSTERING_WAREHOUSE), or the PostgreSQL database ROSTERING_WAREHOUSE_DSN
    names (required when runs execute on more than one host). Through an EnvVar, so the
    Dagster UI shows the variable's name, not the DSN."""
    dsn = env("WAREHOUSE_DSN")
    return WarehouseResource(
        path=env("WAREHOUSE", DEFAULT_WAREHOUSE) or "",
        postgres_dsn=dg.EnvVar(ENV_PREFIX + "WAREHOUSE_DSN") if dsn else None,
    )


def ingest_settings_from_env() -> IngestSettings:
    return IngestSettings(
        archive_root=env("ARCHIVE", DEFAULT_ARCHIVE) or DEFAULT_ARCHIVE,
        quiet_period_seconds=int(env_number("QUIET_PERIOD_SECONDS", DEFAULT_QUIET_PERIOD_SECONDS)),
        max_file_bytes=int(env_number("MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES, minimum=1)),
    )
