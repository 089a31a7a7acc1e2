"""The one place a test can make the pipeline's own process die: `ROSTERING_FAILPOINT=
run_process.start:kill` ends a run's process as it starts (as a broken install would), in the
forkserver run launcher (run_launcher.py), which the test cannot reach from its own process.
Unset in every real deployment.

Every other fault the tests inject from their side (rostering_pipeline_tests/fault_points.py
and faulty_sftp.py); this one goes when the launcher's test can do the same.
"""

from __future__ import annotations

import os

FAILPOINT_ENV = "ROSTERING_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == f"{name}:kill":
        os._exit(137)
