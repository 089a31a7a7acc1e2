"""Helpers the benchmark scripts share: cached synthetic uploads, peak memory, tables,
and a `dagster dev` started in its own process group and always stopped."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
DATA = OUT / "data"
UPLOAD_DATE = date(2026, 9, 1)
#: 2026-09-01 12:00 UTC, day 1 of the synthetic uploads (as in the tests).
DAY_ONE = 1_788_264_000
DAY = 86_400
CSV_FILES = (
    "campuses.csv",
    "staff.csv",
    "students.csv",
    "classes.csv",
    "enrollments.csv",
    "co_teachers.csv",
)


def upload_dir(lea_id: str, students: int, day: int) -> Path:
    """A cached generator upload: the same (LEA, size, day) is generated once, then reused."""
    from rostering_demo.generator import LeaSpec, generate_upload

    target = DATA / f"{lea_id}_{students}" / f"day{day}"
    if (target / ".complete").exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    generate_upload(LeaSpec(lea_id, students), target, day=day, upload_date=UPLOAD_DATE)
    (target / ".complete").write_text("")
    return target


def read_upload_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in CSV_FILES if (folder / name).exists()}


def make_local_upload(lea_id: str, folder: Path, day: int, archive: Path):
    """An `Upload` of the files in `folder` as raw_upload would record it, without SFTP: each
    file archived by sha256 (hard-linked when possible), received at the day's timestamp."""
    from rostering_pipeline.uploads import ArchivedFile, archive_path, make_upload

    stamp = DAY_ONE + (day - 1) * DAY
    files = []
    for name in CSV_FILES:
        path = folder / name
        if not path.exists():
            continue
        digest = sha256_file(path)
        target = archive_path(archive, lea_id, digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        files.append(ArchivedFile(name, path.stat().st_size, stamp, digest, str(target)))
    received = datetime.fromtimestamp(stamp, UTC)
    return make_upload(lea_id, f"{lea_id}-bench-day{day}", files, received_at=received)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def now() -> datetime:
    return datetime.now(UTC)


def run_worker(args: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run this interpreter on `args` in a fresh process; its last stdout line is JSON."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=child_env(env or bytecode_env()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"worker {args} exited with {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.setdefault("process_seconds", time.monotonic() - started)
    return result


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, ""]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if n and _numeric(c) else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("-", "").replace("×", "").isdigit()


def write_result(name: str, payload: dict, table: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"{name}_{stamp}.json").write_text(json.dumps(payload, indent=2, default=str))
    (OUT / f"{name}_{stamp}.txt").write_text(table)
    return OUT / f"{name}_{stamp}.txt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipeline_env(root: Path, server) -> dict[str, str]:
    """The ROSTERING_* configuration pointing at `server` and files under `root`, as the
    demo sets it."""
    from rostering_demo.demo import server_environment

    return {**server_environment(root, server), "ROSTERING_QUIET_PERIOD_SECONDS": "120"}


#: Dagster instance storages a benchmark can run on: the embedded profile's SQLite
#: (deploy/dagster.yaml), dagster-postgres as shipped (a connection per query), and the
#: production profile's pooled Postgres storage (deploy/postgres/dagster.yaml).
INSTANCES = ("sqlite", "postgres", "postgres-pooled")


def dagster_home(root: Path, instance: str = "sqlite", instance_yaml: Path | None = None) -> Path:
    """A DAGSTER_HOME under `root` with the profile's dagster.yaml (or `instance_yaml`, e.g.
    another run launcher: for SQLite the whole file, for Postgres every setting but its
    storage); a Postgres one reads the DAGSTER_PG_* variables (see `postgres_database`)."""
    import yaml

    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if instance == "sqlite":
        shutil.copy(instance_yaml or REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        return home
    config = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    if instance == "postgres":  # the same settings under dagster-postgres's own storage
        config["storage"] = {"postgres": config["storage"]["custom"]["config"]}
    else:
        assert instance == "postgres-pooled", instance
    if instance_yaml:  # its settings (e.g. the forkserver run launcher) over Postgres storage
        overlay = yaml.safe_load(instance_yaml.read_text())
        config.update({k: v for k, v in overlay.items() if k != "storage"})
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@contextmanager
def postgres_server(options: str = "") -> Iterator[str]:
    """A throwaway PostgreSQL (scripts/start_postgres.sh, durable: fsync as shipped) on
    127.0.0.1, with extra server `options` (`-c name=value ...`); yields its superuser DSN and
    stops it on the way out."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="postgres_", dir="/tmp"))
    try:
        out = subprocess.run(
            [str(REPO / "scripts" / "start_postgres.sh"), str(folder), "--durable"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "ROSTERING_POSTGRES_OPTIONS": options},
        ).stdout
        dsn = next(
            line.split("=", 1)[1]
            for line in out.splitlines()
            if line.startswith("export ROSTERING_TEST_POSTGRES_DSN=")
        )
        yield dsn
    finally:
        subprocess.run([str(REPO / "scripts" / "stop_postgres.sh"), str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def postgres_database(dsn: str, name: str) -> dict[str, str]:
    """A new database `name` on the server; the DAGSTER_PG_* variables naming it."""
    from urllib.parse import urlsplit

    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'create database "{name}"')
    finally:
        conn.close()
    url = urlsplit(dsn)
    return {
        "DAGSTER_PG_HOST": url.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": name,
        "DAGSTER_PG_USERNAME": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
    }


def land_upload(sftp_root: Path, lea_id: str, source: Path, day: int, ready: bool = True) -> None:
    """Put an upload in the LEA's inbox as the LEA would: files first (stamped with the
    upload day as server mtime), then the `ready` marker."""
    inbox = sftp_root / lea_id / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    stamp = DAY_ONE + (day - 1) * DAY
    for name in CSV_FILES:
        if (source / name).exists():
            tmp = inbox / f"{name}.partial"
            shutil.copyfile(source / name, tmp)
            os.utime(tmp, (stamp, stamp))
            os.replace(tmp, inbox / name)
    if ready:
        (inbox / "ready").write_text("")


@dataclass(frozen=True)
class OpensshSftp:
    """`openssh_sftp()`'s server, with the attributes `pipeline_env` reads of the embedded one
    (it logs in with `key_file`, not a password)."""

    host: str
    port: int
    username: str
    key_file: Path
    known_hosts: Path
    root: Path  # the local folder it serves as "/"
    pid: int
    password: None = None

    @property
    def host_key_line(self) -> str:
        return self.known_hosts.read_text().strip()


@contextmanager
def openssh_sftp() -> Iterator[OpensshSftp]:
    """OpenSSH's sshd on 127.0.0.1 serving SFTP only (scripts/start_sshd.sh, as `./run test`
    starts it; needs root and Debian's openssh-server), stopped on exit."""
    import shlex
    import tempfile

    folder = tempfile.mkdtemp(prefix="rostering-bench-sshd.", dir="/run")  # chroot: root-owned
    try:
        started = subprocess.run(
            [str(REPO / "scripts" / "start_sshd.sh"), folder],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if started.returncode:
            raise RuntimeError(f"could not start sshd: {started.stderr.strip()}")
        details = {}  # its `export ROSTERING_TEST_SSHD_<NAME>=<value>` lines
        for line in started.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            details[name.removeprefix("ROSTERING_TEST_SSHD_")] = shlex.split(value)[0]
        yield OpensshSftp(
            host=details["HOST"],
            port=int(details["PORT"]),
            username=details["USER"],
            key_file=Path(details["KEY"]),
            known_hosts=Path(details["KNOWN_HOSTS"]),
            root=Path(details["ROOT"]),
            pid=int(Path(details["PID_FILE"]).read_text()),
        )
    finally:
        subprocess.run([str(REPO / "scripts" / "stop_sshd.sh"), folder], timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)


PYCACHE = OUT / "pycache"


def bytecode_env(cold: bool = False) -> dict[str, str]:
    """Child processes keep compiled bytecode under benchmarks/out/pycache, as an install with
    `uv sync --compile-bytecode` would have it. This sandbox sets PYTHONDONTWRITEBYTECODE=1
    and the venv holds no .pyc, so otherwise every Dagster run process compiles ~4,000
    modules from source (seconds of CPU each). `cold=True` keeps the environment as it is."""
    if cold:
        return {}
    return {"PYTHONPYCACHEPREFIX": str(PYCACHE), "PYTHONDONTWRITEBYTECODE": ""}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    if env.get("PYTHONDONTWRITEBYTECODE") == "":
        del env["PYTHONDONTWRITEBYTECODE"]
    return env


@contextmanager
def dagster_dev(env: dict[str, str], log_path: Path, port: int | None = None) -> Iterator[int]:
    """`dagster dev` on workspace.yaml in its own session; the whole process group is
    terminated (then killed) on exit, whatever happened. Yields the webserver's port."""
    with dagster_dev_process(env, log_path, port) as (port, _):
        yield port


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM (a `kill`, a CI timeout) ends the script as Ctrl-C does, through its `finally`
    blocks: `dagster dev`'s process group and a throwaway PostgreSQL are stopped, not left
    running (by default SIGTERM ends Python without running them)."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


@contextmanager
def dagster_dev_process(
    env: dict[str, str], log_path: Path, port: int | None = None
) -> Iterator[tuple[int, int]]:
    """`dagster_dev`, yielding (port, pid of `dagster dev`): the pid is also its process
    group's id (it leads a session of its own), for sampling the group's memory."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        env=child_env(env),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield port, process.pid
    finally:
        _stop_group(process)
        log.close()


def _stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def wait_http(port: int, timeout: float) -> float:
    """Seconds until the webserver answers on /server_info, bounded by `timeout`."""
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dagster dev did not answer on port {port} within {timeout:.0f}s")


def poll_statuses(warehouse: Path, lea_ids: Sequence[str] | None = None) -> dict[str, list]:
    """Upload statuses by LEA, read with a short read-only connection; {} while the file is
    missing or locked by the writer (DuckDB allows one process at a time)."""
    import duckdb

    if not warehouse.exists():
        return {}
    try:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            rows = conn.execute(
                "select lea_id, upload_id, status, decided_at from ingest.uploads"
            ).fetchall()
    except (duckdb.IOException, duckdb.CatalogException, duckdb.ConnectionException):
        return {}
    out: dict[str, list] = {}
    for lea_id, upload_id, status, decided_at in rows:
        if lea_ids is None or lea_id in lea_ids:
            out.setdefault(lea_id, []).append((upload_id, status, decided_at))
    return out


def step_durations(instance, run_id: str) -> dict[str, float]:
    """STEP_START to STEP_SUCCESS of each step of a run, from the instance's event log."""
    steps: dict[str, float] = {}
    started: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and event.step_key in started:
            steps[event.step_key] = entry.timestamp - started[event.step_key]
    return steps


def keep_log(path: Path, name: str) -> None:
    """Copy a log out of a temp dir that is about to be removed."""
    if path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, OUT / name)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@contextmanager
def dagster_instance(home: Path) -> Iterator:
    """The deployment's instance (its run and event storage), read from this process."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        yield instance


def applied_event(instance, run_id: str):
    """The run's applied_roster materialization event (Dagster writes it after the apply's
    transaction commits), or None before then."""
    import dagster as dg

    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.asset_materialization
        if materialization and materialization.asset_key == dg.AssetKey("applied_roster"):
            return event
    return None
