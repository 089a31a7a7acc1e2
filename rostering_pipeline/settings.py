"""Deployment configuration read from the environment, with local defaults for the demo."""

from __future__ import annotations

import os

import dagster as dg

from .sftp import SftpResource
from .warehouse import WarehouseResource

ENV_PREFIX = "ROSTERING_"


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


class IngestSettings(dg.ConfigurableResource):
    """Where uploads are archived and when an inbox counts as a complete upload."""

    archive_root: str = "data/archive"
    quiet_period_seconds: int = 120
    max_file_bytes: int = 2 * 1024**3


def sftp_from_env() -> SftpResource:
    """SFTP settings; the password comes through an EnvVar so it is never stored in config."""
    return SftpResource(
        host=env("SFTP_HOST", "127.0.0.1") or "127.0.0.1",
        port=int(env("SFTP_PORT", "22") or 22),
        username=env("SFTP_USER", "rostering") or "rostering",
        password=dg.EnvVar(ENV_PREFIX + "SFTP_PASSWORD") if env("SFTP_PASSWORD") else None,
        private_key_path=env("SFTP_KEY_FILE"),
        known_hosts_path=env("SFTP_KNOWN_HOSTS"),
        host_key=env("SFTP_HOST_KEY"),
    )


def warehouse_from_env() -> WarehouseResource:
    return WarehouseResource(path=env("WAREHOUSE", "data/warehouse.duckdb") or "")


def ingest_settings_from_env() -> IngestSettings:
    return IngestSettings(
        archive_root=env("ARCHIVE", "data/archive") or "data/archive",
        quiet_period_seconds=int(env("QUIET_PERIOD_SECONDS", "120") or 120),
    )
