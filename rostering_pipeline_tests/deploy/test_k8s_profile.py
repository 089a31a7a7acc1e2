"""The Kubernetes profile (deploy/k8s/): the Helm values carry deploy/dagster.yaml's run limits
and no secret, and the code location image's environment, built with the Dockerfile's own
`uv sync` commands, validates the definitions and serves them with the image's command.

Neither docker nor helm runs here (no image registry, no chart repository): the image's
environment is built as a virtualenv, with this interpreter in place of the base image's."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
VALUES = K8S / "values.yaml"
DOCKERFILE = K8S / "Dockerfile"
EMBEDDED = REPO / "deploy" / "dagster.yaml"
#: Names that hold a secret when they hold a value (a Kubernetes secret's *name* is fine).
SECRETISH = re.compile(r"password|passwd|secret|token|credential|private|apikey|api_key", re.I)


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _camel_keys(value):
    if isinstance(value, dict):
        return {_camel(k): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def test_k8s_values_carry_the_embedded_run_limits() -> None:
    values = _values()
    embedded = yaml.safe_load(EMBEDDED.read_text())
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert (daemon["enabled"], coordinator["enabled"]) == (True, True)
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    runs = embedded["concurrency"]["runs"]
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    # The chart writes these under run_coordinator.config, whose keys Dagster spells as
    # deploy/dagster.yaml does (`value: {applyLimitPerUniqueValue: true}` in both).
    assert queued["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in queued["tagConcurrencyLimits"]  # fmt: skip
    assert queued["dequeueIntervalSeconds"] == embedded["run_queue"]["dequeue_interval_seconds"]
    assert daemon["runMonitoring"] == _camel_keys(embedded["run_monitoring"])
    assert daemon["runRetries"] == _camel_keys(embedded["run_retries"])


def _literal_secrets(value, path: str = "") -> list[str]:
    """Paths in the values tree where a secret-looking name holds a literal value."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            literal = isinstance(item, str | int) and not isinstance(item, bool) and item != ""
            if SECRETISH.search(str(key)) and literal:
                if not str(key).endswith(("SecretName", "secretName")):
                    found.append(here)
            found += _literal_secrets(item, here)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += _literal_secrets(item, f"{path}[{n}]")
    return found


def test_k8s_values_hold_no_plaintext_secret() -> None:
    values = _values()
    assert _literal_secrets(values) == []
    assert not _literal_secrets({"postgresqlPassword": "hunter2"}) == []  # the check can fail
    # The instance's database password: a Kubernetes secret the chart does not generate.
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    # The pipeline's secrets: a Kubernetes secret, for the code server and every run pod.
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "rostering-pipeline-env"} in deployment["envSecrets"]
    assert {"name": "rostering-pipeline-env"} in launcher["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert not [name for name in deployment.get("env", {}) if SECRETISH.search(name)]


def test_k8s_runs_write_the_postgres_warehouse_named_without_its_password() -> None:
    """Run pods on several nodes cannot share a DuckDB file: the profile names the PostgreSQL
    warehouse, and its password comes from the pipeline's secret (libpq's PGPASSWORD)."""
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    dsn = deployment["env"]["ROSTERING_WAREHOUSE_DSN"]
    assert "dbname=" in dsn and "password" not in dsn.lower() and "@" not in dsn
    assert "ROSTERING_WAREHOUSE" not in deployment["env"]  # no DuckDB file on a pod's disk
    assert "PGPASSWORD" in VALUES.read_text()  # the secret the comments tell operators to make


def _dockerfile() -> tuple[list[str], list[str]]:
    """The Dockerfile's `uv sync` commands and its CMD."""
    lines = DOCKERFILE.read_text().splitlines()
    syncs = [line.removeprefix("RUN ").strip() for line in lines if line.startswith("RUN uv sync")]
    (cmd,) = [json.loads(line.removeprefix("CMD ")) for line in lines if line.startswith("CMD ")]
    return syncs, cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_k8s_image_environment_validates_and_serves_the_code_location(tmp_path: Path) -> None:
    syncs, cmd = _dockerfile()
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    module = cmd[cmd.index("--module-name") + 1]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module]
    assert deployment["port"] == int(cmd[cmd.index("--port") + 1])

    # The build context as the Dockerfile copies it, and its environment built as it builds it.
    work = tmp_path / "opt" / "rostering"
    work.mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "rostering_pipeline", work / "rostering_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (work / "deploy").mkdir()
    shutil.copy(REPO / "deploy" / "lea_settings.toml", work / "deploy" / "lea_settings.toml")
    venv = tmp_path / "venv"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))},
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    for sync in syncs:
        args = shlex.split(sync)
        assert args[:2] == ["uv", "sync"], sync
        result = subprocess.run(
            [uv, *args[1:], "--python", sys.executable],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("DAGSTER_HOME", None)

    # Locked runtime dependencies only, the project installed as a package, the k8s extra.
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util as u, rostering_pipeline, dagster_k8s, dagster_postgres;"
         " print(rostering_pipeline.__file__); print(u.find_spec('pytest') is None)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    package_file, no_pytest = probe.stdout.split()
    assert package_file.startswith(str(venv)), package_file
    assert no_pytest == "True"

    validate = subprocess.run(
        ["dagster", "definitions", "validate", "--module-name", module],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr[-2000:]
    assert "All code locations passed validation" in validate.stdout + validate.stderr

    # The image's command, on loopback, answering the chart's own health check.
    port = _free_port()
    served = [*cmd]
    served[served.index("--host") + 1] = "127.0.0.1"
    served[served.index("--port") + 1] = str(port)
    server = subprocess.Popen(
        served, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            health = subprocess.run(
                ["dagster", "api", "grpc-health-check", "--port", str(port), "--host", "127.0.0.1"],
                cwd=work, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if health.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, health.stdout + health.stderr
            time.sleep(2)
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)
