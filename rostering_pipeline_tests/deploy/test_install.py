"""What `./run`'s set-up leaves installed for the processes it starts."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

#: What every run process imports before its first step (Dagster and its storage, the frames
#: and rules, the warehouse engine, the SFTP client).
RUN_PROCESS_LIBRARIES = ("dagster", "sqlalchemy", "polars", "pandera", "duckdb", "paramiko")


def test_run_processes_start_from_compiled_bytecode() -> None:
    """`uv sync --compile-bytecode` in ./run: a library without its .pyc is compiled from
    source by every new process where none may be written (PYTHONDONTWRITEBYTECODE), ~2 CPU-s
    a Dagster run process."""
    missing = []
    for name in RUN_PROCESS_LIBRARIES:
        source = importlib.import_module(name).__file__
        assert source is not None, name
        if not Path(importlib.util.cache_from_source(source)).exists():
            missing.append(f"{name} ({source})")
    assert not missing, (
        "installed without compiled bytecode: "
        + ", ".join(missing)
        + "; set up with ./run (uv sync --frozen --compile-bytecode)"
    )
