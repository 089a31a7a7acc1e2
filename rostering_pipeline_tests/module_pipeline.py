"""One pipeline shared by a whole test module: an SFTP server, a Dagster instance and a
warehouse that many uploads (one LEA each) go through in a single `sync`, so a catalogue of
bad inputs costs one run per LEA rather than one server and instance per case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from rostering_demo.embedded_sftp import EmbeddedSftpServer
from rostering_pipeline_tests.conftest import Pipeline, pipeline_env


@contextmanager
def shared_pipeline(root: Path) -> Iterator[Pipeline]:
    """The `pipeline` fixture's set-up, for a module-scoped fixture; stops what it starts."""
    (root / "sftp").mkdir()
    with (
        EmbeddedSftpServer(root / "sftp") as server,
        pytest.MonkeyPatch.context() as env_patch,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        env = pipeline_env(root, server.host, server.port, server.username, server.host_key_line)
        env["ROSTERING_SFTP_PASSWORD"] = server.password or ""
        for key, value in env.items():
            env_patch.setenv(key, value)
        yield Pipeline(root, server.root, instance, env)
