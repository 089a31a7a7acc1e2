"""Where the pipeline keeps its files when the environment does not say: the demo's folder.

`rostering demo` builds its deployment there, `rostering ui` serves it, and every default
(the warehouse `rostering explain` reads, the archive `rostering rebuild` reads, the Dagster
instance `rostering sync` uses) points into it. A deployment sets ROSTERING_WAREHOUSE,
ROSTERING_ARCHIVE and DAGSTER_HOME instead; ROSTERING_DEMO_DIR moves the demo's folder
(the tests use it to keep theirs out of the repository)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("ROSTERING_DEMO_DIR") or REPO / "data" / "demo")
DEFAULT_WAREHOUSE = DEMO_DIR / "warehouse.duckdb"
DEFAULT_ARCHIVE = DEMO_DIR / "archive"
DEFAULT_DAGSTER_HOME = DEMO_DIR / "dagster_home"
