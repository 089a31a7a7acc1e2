"""A statewide morning: every LEA's upload landing over one window, through the sensor and
the daemon of `dagster dev`, on the embedded or the Postgres profile (issue 18).

The state (deterministic, seeded by --seed, default 18): 1,200 LEAs, 5.5 M students, shaped
like Texas (~1,020 school districts and ~180 charters):

- the 16 biggest are a fixed list of sizes close to Texas's largest districts:
  189k, 141k, 117k, 102k (the four above 100k), then 91k, 80k, 78k, 74k, 73k, 72k, 67k, 63k,
  56k, 54k, 52k, 50k;
- the other 1,184 are lognormal (sigma 1.55; the median is solved for, so that the whole
  state totals 5.5 M: it comes out near 1,100 students), softly capped under the fixed list
  (above 20k a size bends towards 48k, never past it) and at least 25 students.

That gives about 560 LEAs under 1,000 students, 520 of 1k-10k, 115 of 10k-100k and 4 above
100k (the script prints the histogram). LEA ids are 480001 + the LEA's rank by size (the
biggest is 480001). `--leas N` takes N LEAs at evenly spaced ranks (0, 1200/N, ...), so a
quick run keeps the shape: the biggest LEA and a long tail of small ones. `--scale F`
multiplies every size (at least 20 students).

Each LEA lands at a seeded moment of the morning window: its share of the window is drawn
once per LEA (uniform, seeded), so the same LEA lands at the same point of any window. The
window is `--window-minutes`, by default 30 min for 1,200 LEAs and proportionally less for
fewer (the same landings per minute). Landing copies the LEA's day-1 upload (generated once
and cached per LEA and size under benchmarks/out/data by common.upload_dir) into its inbox
on the SFTP server's tree, files first, then the `ready` marker; the landing time is taken
after `ready` is written. The server (`--sftp`) is the demo's asyncssh server inside this
script (the default) or OpenSSH's sshd on loopback (`openssh`: scripts/start_sshd.sh, as
`./run test` starts it; needs root), what a state would run; its CPU is then counted apart
from this script's.

Profiles (`--profile`):
- `embedded` (default): deploy/dagster.yaml (SQLite instance) and the DuckDB warehouse file;
- `postgres`: deploy/postgres/dagster.yaml (Dagster's storage in Postgres, pooled
  connections) on a throwaway durable PostgreSQL that the script starts and stops
  (scripts/start_postgres.sh --durable), and the warehouse on a second database of the same
  server, named by ROSTERING_WAREHOUSE_DSN (a URL without the password; libpq and the
  pipeline read PGPASSWORD): the pipeline's PostgreSQL warehouse backend. The table says
  which warehouse held the uploads.

Measured (landing -> applied = the LEA's `ready` written -> Dagster's applied_roster
materialization of its run, which Dagster records after the apply's transaction commits;
read from the instance, never by opening the warehouse while runs work):
- wall time from the first landing until the last LEA's roster is applied, and from the
  last landing until then;
- p50/p95/max landing -> applied;
- per-run overhead = launched -> ended (RUN_STARTING -> RUN_SUCCESS in the run's event log)
  minus the sum of its steps (STEP_START -> STEP_SUCCESS): what Dagster adds to a run's
  work, split into the launch (RUN_STARTING -> RUN_START: the run process starting and
  loading the code location) and the rest (RUN_START -> RUN_SUCCESS minus the steps: events
  between steps); medians over successful runs, with the median run duration (RUN_START ->
  RUN_SUCCESS), step sum and queue (created -> RUN_STARTING) beside them. Events a step
  writes while it works (its inputs, outputs, materializations, checks) and its waits for
  the warehouse count as the step's, so this is a floor on Dagster's cost. It differs from
  bench_orchestration.py, which subtracts the same work done as plain calls from
  RUN_START -> RUN_SUCCESS;
- peak RSS of dagster dev's whole process tree (webserver, daemon, code server, every run
  process: sampled from /proc every second, RSS summed over the processes, so shared pages
  count once per process), and peak PSS (shared pages split);
- postgres profile: the most client connections open at once (pg_stat_activity every
  second): those of dagster dev's process tree (matched by client port, per database), and
  all but the sampler's (this script reads the instance too); the server's peak PSS;
- runs, failed runs (the target is 0), asset checks that failed, uploads applied exactly
  once (from the instance: applied_roster events whose decision is `apply`, per LEA; and
  from the warehouse's ingest.uploads once the runs are done).

Keep runs small on a shared machine; the statewide day itself is the last command:

    uv run python benchmarks/bench_statewide.py --leas 12 --scale 0.01 --window-minutes 1
    uv run python benchmarks/bench_statewide.py --leas 12 --scale 0.01 --window-minutes 1 \\
        --profile postgres
    uv run python benchmarks/bench_statewide.py --histogram        # the distribution only
    uv run python benchmarks/bench_statewide.py --generate-only    # fill the upload cache
    uv run python benchmarks/bench_statewide.py --profile postgres # 1,200 LEAs, 5.5 M
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STATE_LEAS = 1200
STATE_STUDENTS = 5_500_000
#: Sizes close to Texas's largest districts (2020s enrollment, rounded).
BIGGEST = (
    189_000, 141_000, 117_000, 102_000, 91_000, 80_000, 78_000, 74_000,
    73_000, 72_000, 67_000, 63_000, 56_000, 54_000, 52_000, 50_000,
)  # fmt: skip
SIGMA = 1.55
KNEE, CAP = 20_000, 48_000
FLOOR = 25
MIN_SCALED = 20
FIRST_ID = 480_001
STATE_WINDOW_MINUTES = 30.0
BINS = ((0, 1_000, "<1k"), (1_000, 10_000, "1k-10k"), (10_000, 100_000, "10k-100k"))
BINS += ((100_000, math.inf, ">100k"),)
SAMPLE_SECONDS = 1.0


# -- the state ---------------------------------------------------------------------------


def _soft_cap(x: float) -> float:
    """Sizes above KNEE bend towards CAP (the fixed list stays the biggest)."""
    if x <= KNEE:
        return x
    return KNEE + (CAP - KNEE) * (1 - math.exp(-(x - KNEE) / (CAP - KNEE)))


def state_sizes(seed: int) -> list[int]:
    """The 1,200 LEA sizes, biggest first, totalling STATE_STUDENTS (module docstring)."""
    rng = random.Random(seed)
    draws = [rng.gauss(0.0, 1.0) for _ in range(STATE_LEAS - len(BIGGEST))]
    rest_total = STATE_STUDENTS - sum(BIGGEST)

    def tail(mu: float) -> list[int]:
        return [max(FLOOR, round(_soft_cap(math.exp(mu + SIGMA * z)))) for z in draws]

    lo, hi = 0.0, 15.0
    for _ in range(80):  # the tail's sum grows with mu: bisect for the state's total
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(tail(mid)) < rest_total else (lo, mid)
    sizes = sorted([*BIGGEST, *tail(hi)], reverse=True)
    sizes[-1] += STATE_STUDENTS - sum(sizes)  # rounding: the smallest LEA absorbs it
    return sizes


@dataclass(frozen=True)
class Lea:
    lea_id: str
    rank: int  # 0: the biggest of the state
    students: int  # after --scale
    landing_share: float  # where in the window it lands, 0..1


def choose_leas(n: int, scale: float, seed: int) -> list[Lea]:
    """n LEAs at evenly spaced ranks of the state (the biggest always among them)."""
    if not 1 <= n <= STATE_LEAS:
        raise SystemExit(f"--leas must be 1-{STATE_LEAS}, got {n}")
    sizes = state_sizes(seed)
    landing = random.Random(f"{seed}-landing")
    shares = [landing.random() for _ in range(STATE_LEAS)]
    ranks = sorted({math.floor(i * STATE_LEAS / n) for i in range(n)})
    return [
        Lea(
            f"{FIRST_ID + r:06d}",
            r,
            max(MIN_SCALED, round(sizes[r] * scale)),
            shares[r],
        )
        for r in ranks
    ]


def histogram(sizes: list[int]) -> list[list[object]]:
    rows: list[list[object]] = []
    for lo, hi, label in BINS:
        inside = [s for s in sizes if lo <= s < hi]
        rows.append([label, len(inside), sum(inside)])
    rows.append(["total", len(sizes), sum(sizes)])
    return rows


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- sampling the process tree and Postgres ---------------------------------------------------


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return out


def tree(root: int, procs: dict[int, tuple[int, int]], group: int | None = None) -> set[int]:
    """`root`, its descendants and (when given) the members of process group `group`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found = {p for p, (_, g) in procs.items() if g == group} if group else set()
    todo = [root] if root in procs else []
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(c for c in children.get(pid, []) if c not in found)
    return found


PAGE = os.sysconf("SC_PAGE_SIZE")


def memory_mb(pids: set[int]) -> tuple[float, float]:
    """Summed RSS and PSS of `pids` in MB (processes that ended meanwhile count 0)."""
    rss = pss = 0
    for pid in pids:
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
        except (OSError, IndexError, ValueError):
            continue
    return rss / 1e6, pss / 1e6


def socket_ports(pids: set[int]) -> set[int]:
    """Local TCP ports of the sockets that `pids` hold open (their fds, /proc/net/tcp)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


TICK = os.sysconf("SC_CLK_TCK")


def role(pid: int, procs: dict[int, tuple[int, int]]) -> str:
    """What a process of the morning is, from its command line (and, for a process forked
    from the forkserver, its parent's)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "ended"
    cmd = cmd.split(" --instance-ref", 1)[0]  # the instance's settings name the launcher
    if cmd.startswith("postgres") or cmd.split(" ", 1)[0].endswith("/postgres"):
        return "postgres"
    if cmd.startswith(("sshd", "/usr/sbin/sshd")):
        return "sshd (SFTP server)"
    if "multiprocessing.forkserver" in cmd:
        parent = procs.get(pid, (0, 0))[0]
        return "run processes" if role_cache.get(parent) == "forkserver" else "forkserver"
    for needle, name in (
        ("execute_run", "run processes"),
        ("dagster_webserver", "webserver"),
        ("dagster-webserver", "webserver"),
        ("dagster._daemon", "daemon"),
        ("dagster-daemon", "daemon"),
        ("api grpc", "code server"),
        ("code-server start", "code server proxy"),
        ("dagster dev", "dagster dev"),
        ("multiprocessing.resource_tracker", "multiprocessing resource tracker"),
    ):
        if needle in cmd:
            return name
    return "other: " + cmd[:40]


role_cache: dict[int, str] = {}


def cpu_snapshot(pids: set[int], procs: dict[int, tuple[int, int]]) -> dict[int, tuple]:
    """pid -> (role, own CPU seconds, CPU seconds of its reaped children)."""
    out = {}
    for pid in sorted(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if pid not in role_cache:
            role_cache[pid] = role(pid, procs)
        own = (int(fields[11]) + int(fields[12])) / TICK
        reaped = (int(fields[13]) + int(fields[14])) / TICK
        out[pid] = (role_cache[pid], own, reaped)
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, idle / TICK


def cpu_by_role(before: dict[int, tuple], after: dict[int, tuple]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by role. A process that ended meanwhile
    counts through its parent's reaped-children time (a run process through the code server
    or forkserver that waited for it), under "<role>'s ended children"; one that ended
    unreaped, or between samples, is missed (the machine's busy time shows the gap)."""
    spent: dict[str, float] = {}
    for pid, (name, own, reaped) in after.items():
        own0, reaped0 = before.get(pid, (name, 0.0, 0.0))[1:]
        spent[name] = spent.get(name, 0.0) + own - own0
        if reaped > reaped0:
            key = "run processes" if name in ("code server", "forkserver") else f"{name} (ended)"
            spent[key] = spent.get(key, 0.0) + reaped - reaped0
    return spent


class Sampler(threading.Thread):
    """Every SAMPLE_SECONDS: dagster dev's process tree's memory, and for Postgres the client
    connections that tree holds (matched by their client ports), all client connections but
    the sampler's, and the server's memory. Keeps the maxima and a series."""

    def __init__(self, dagster_pid: int, pg_dsn: str | None, sftp_pid: int | None) -> None:
        super().__init__(daemon=True, name="sampler")
        self.dagster_pid = dagster_pid
        self.sftp_pid = sftp_pid
        self.pg_dsn = pg_dsn
        self.stopping = threading.Event()
        self.max_rss = self.max_pss = self.max_processes = 0.0
        self.max_pg_connections = self.max_pg_all_connections = 0
        self.max_pg_by_db: dict[str, int] = {}
        self.max_pg_pss = 0.0
        self.series: list[tuple] = []
        self.error = ""
        self.postmaster: int | None = None

    def cpu(self) -> tuple[dict[int, tuple], tuple[float, float], float]:
        """The CPU spent so far by dagster dev's tree and the Postgres server (per process),
        the whole machine (busy, idle) and this script (the SFTP server, the lander, the
        polling of the instance, the sampler)."""
        procs = _processes()
        pids = tree(self.dagster_pid, procs, group=self.dagster_pid)
        if self.postmaster:
            pids |= tree(self.postmaster, procs)
        if self.sftp_pid:
            pids |= tree(self.sftp_pid, procs)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cpu_snapshot(pids, procs), machine_cpu(), usage.ru_utime + usage.ru_stime

    def run(self) -> None:
        conn = postmaster = None
        try:
            if self.pg_dsn:
                import psycopg2

                conn = psycopg2.connect(self.pg_dsn)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(
                        "select pid from pg_stat_activity where backend_type = 'checkpointer'"
                    )
                    row = cur.fetchone()
                    postmaster = _processes().get(row[0], (None,))[0] if row else None
                    self.postmaster = postmaster
            while not self.stopping.wait(SAMPLE_SECONDS):
                self.sample(conn, postmaster)
        except Exception as e:  # a benchmark's sampler: report it, never hang the run
            self.error = f"{type(e).__name__}: {e}"
        finally:
            if conn is not None:
                conn.close()

    def sample(self, conn, postmaster: int | None) -> None:
        procs = _processes()
        members = tree(self.dagster_pid, procs, group=self.dagster_pid)
        rss, pss = memory_mb(members)
        self.max_rss, self.max_pss = max(self.max_rss, rss), max(self.max_pss, pss)
        self.max_processes = max(self.max_processes, len(members))
        ours = 0
        if conn is not None:
            with conn.cursor() as cur:
                cur.execute(
                    "select datname, client_port from pg_stat_activity"
                    " where backend_type = 'client backend' and pid <> pg_backend_pid()"
                )
                rows = cur.fetchall()
            ports = socket_ports(members)
            by_db: dict[str, int] = {}
            for datname, port in rows:
                if port in ports:
                    ours += 1
                    by_db[datname] = by_db.get(datname, 0) + 1
            self.max_pg_connections = max(self.max_pg_connections, ours)
            self.max_pg_all_connections = max(self.max_pg_all_connections, len(rows))
            for db, n in by_db.items():
                self.max_pg_by_db[db] = max(self.max_pg_by_db.get(db, 0), n)
            if postmaster:
                self.max_pg_pss = max(self.max_pg_pss, memory_mb(tree(postmaster, procs))[1])
        self.series.append((time.time(), round(rss, 1), round(pss, 1), len(members), ours))


def cpu_spent(before, after, sftp: str) -> dict:
    """CPU seconds of the morning by role, this script's, and the machine's busy and idle."""
    by_role = cpu_by_role(before[0], after[0])
    script = "lander, polling" if sftp == "openssh" else "SFTP server, lander, polling"
    by_role[f"this script ({script})"] = after[2] - before[2]
    return {
        "by_role": dict(sorted(by_role.items(), key=lambda kv: -kv[1])),
        "machine_busy": after[1][0] - before[1][0],
        "machine_idle": after[1][1] - before[1][1],
    }


STATEMENTS_OPTIONS = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=2000"
TOP_STATEMENTS = 15


def pg_counters(dsn: str, statements: bool, reset: bool = False) -> dict:
    """Sessions opened so far per database (pg_stat_database) and, with pg_stat_statements
    loaded, the statements that took the most server time since the reset."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select datname, sessions from pg_stat_database where datname is not null")
            out: dict = {"sessions": dict(cur.fetchall()), "statements": []}
            if statements and reset:
                cur.execute("create extension if not exists pg_stat_statements")
                cur.execute("select pg_stat_statements_reset()")
            elif statements:
                cur.execute(
                    "select d.datname, s.calls, s.total_exec_time, s.rows, s.query"
                    " from pg_stat_statements s join pg_database d on d.oid = s.dbid"
                    " order by s.total_exec_time desc"
                )
                rows = cur.fetchall()
                out["statements_total_ms"] = sum(r[2] for r in rows)
                out["statements_calls"] = sum(r[1] for r in rows)
                out["statements"] = [
                    (db, calls, ms, nrows, " ".join(query.split())[:110])
                    for db, calls, ms, nrows, query in rows[:TOP_STATEMENTS]
                ]
        return out
    finally:
        conn.close()


# -- landing and waiting ---------------------------------------------------------------------


class Lander(threading.Thread):
    """Lands each LEA's upload at its moment of the window; `landed` holds when each `ready`
    was written (epoch seconds)."""

    def __init__(
        self, sftp_root: Path, schedule: list[tuple[float, str, Path]], start: float
    ) -> None:
        super().__init__(daemon=True, name="lander")
        self.sftp_root, self.schedule, self.start_at = sftp_root, schedule, start
        self.landed: dict[str, float] = {}
        self.stopping = threading.Event()
        self.error = ""

    def run(self) -> None:
        try:
            for offset, lea_id, folder in sorted(self.schedule):
                if self.stopping.wait(max(0.0, self.start_at + offset - time.time())):
                    return
                common.land_upload(self.sftp_root, lea_id, folder, day=1)
                self.landed[lea_id] = time.time()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"


def wait_runs(instance, lander: Lander, leas: set[str], after: datetime, timeout: float) -> dict:
    """Poll run storage every 2 s until every LEA has a successful run, or nothing is left to
    happen (every LEA landed, no run queued or working, none ended for 30 s: time for run
    retries to start a new one), or `timeout`. Returns what was seen."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    applied: dict[str, tuple[float, str, str]] = {}  # lea -> (event time, upload_id, decision)
    last_report = 0.0
    by_id: dict = {}  # run_id -> its latest record
    since = after
    while True:
        # Only the runs updated since the last look (a margin for clocks and commit order):
        # reading every run of the morning every 2 s cost the machine ~0.4 s of CPU a run.
        polled = datetime.now(UTC) - timedelta(seconds=10)
        filters = dg.RunsFilter(created_after=after, updated_after=since)
        by_id.update((r.dagster_run.run_id, r) for r in instance.get_run_records(filters))
        since = max(after, polled)
        records = list(by_id.values())
        ours = [r for r in records if r.dagster_run.tags.get("lea_id") in leas]
        for r in ours:
            lea = r.dagster_run.tags["lea_id"]
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS and lea not in applied:
                event = common.applied_event(instance, r.dagster_run.run_id)
                if event is not None:
                    meta = event.asset_materialization.metadata
                    applied[lea] = (
                        event.timestamp,
                        meta["upload_id"].value,
                        meta["decision"].value,
                    )
        unfinished = [r for r in ours if not r.end_time]
        ended = [r.end_time for r in ours if r.end_time]
        everyone_landed = len(lander.landed) == len(leas) or not lander.is_alive()
        settled = (
            everyone_landed and ours and not unfinished and time.time() - max(ended, default=0) > 30
        )
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            failed = sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in ours)
            print(
                f"… {len(lander.landed)}/{len(leas)} landed, {len(ours)} runs"
                f" ({len(unfinished)} queued or working, {failed} failed),"
                f" {len(applied)} LEAs applied",
                file=sys.stderr,
                flush=True,
            )
        done = (everyone_landed and leas <= applied.keys()) or settled
        if done or time.monotonic() > deadline:
            return {
                "records": ours,
                "applied": applied,
                "timed_out": not done,
                "other_runs": _other_runs(records, ours),
            }
        time.sleep(2.0)


def _other_runs(records, ours) -> dict[str, list[float]]:
    """The runs that are not an LEA's sync (the status board's refreshes), per job: how many,
    and the seconds they ran in all (they share the run queue's slots and the cores)."""
    mine = {r.dagster_run.run_id for r in ours}
    others: dict[str, list[float]] = {}
    for r in records:
        if r.dagster_run.run_id in mine:
            continue
        seen = others.setdefault(r.dagster_run.job_name, [0, 0.0])
        seen[0] += 1
        if r.start_time and r.end_time:
            seen[1] += r.end_time - r.start_time
    return others


def sensor_ticks(instance, after: float, before: float) -> list[float]:
    """How long each of the inbox sensor's ticks took (seconds), first landing to the end."""
    from dagster._core.definitions.run_request import InstigatorType

    ticks = []
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name != "lea_inbox_sensor":
            continue
        for tick in instance.get_ticks(
            state.instigator_origin_id, state.selector_id, after=after, before=before
        ):
            if tick.end_timestamp:
                ticks.append(tick.end_timestamp - tick.timestamp)
    return ticks


# -- the results -------------------------------------------------------------------------------


def run_figures(instance, records) -> dict:
    """Durations, overheads, applied_roster decisions and failures of the runs, from each
    run's event log (read once per run)."""
    import dagster as dg

    kinds = dg.DagsterEventType
    durations, in_run, launches, overheads, step_sums, queued = [], [], [], [], [], []
    decisions: dict[str, list[str]] = {}  # lea -> decisions of its applied_roster events
    checks = failed_checks = 0
    for rec in records:
        run = rec.dagster_run
        at: dict[object, float] = {}
        step_started: dict[str, float] = {}
        steps = 0.0
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type
            if kind in (kinds.RUN_STARTING, kinds.RUN_START, kinds.RUN_SUCCESS):
                at.setdefault(kind, entry.timestamp)
            elif kind == kinds.STEP_START:
                step_started[event.step_key] = entry.timestamp
            elif kind == kinds.STEP_SUCCESS and event.step_key in step_started:
                steps += entry.timestamp - step_started[event.step_key]
            elif kind == kinds.ASSET_MATERIALIZATION:
                mat = event.event_specific_data.materialization
                if mat.asset_key == dg.AssetKey("applied_roster"):
                    decisions.setdefault(run.tags["lea_id"], []).append(
                        mat.metadata["decision"].value
                    )
            elif kind == kinds.ASSET_CHECK_EVALUATION:
                checks += 1
                failed_checks += not event.event_specific_data.passed
        if run.status != dg.DagsterRunStatus.SUCCESS or len(at) < 3:
            continue
        starting, started, ended = (
            at[kinds.RUN_STARTING],
            at[kinds.RUN_START],
            at[kinds.RUN_SUCCESS],
        )
        durations.append(ended - started)
        step_sums.append(steps)
        in_run.append(ended - started - steps)
        launches.append(started - starting)
        overheads.append(ended - starting - steps)
        queued.append(starting - rec.create_timestamp.timestamp())
    statuses: dict[str, int] = {}
    for rec in records:
        status = rec.dagster_run.status.value
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "runs": len(records),
        "statuses": statuses,
        "failed_runs": statuses.get("FAILURE", 0),
        "checks": checks,
        "failed_checks": failed_checks,
        "run_durations": durations,
        "step_sums": step_sums,
        "overheads": overheads,
        "in_run_overheads": in_run,
        "launches": launches,
        "queue_delays": queued,
        "applied_decisions": decisions,
    }


def warehouse_statuses(profile: str, duckdb_file: Path, pg_warehouse: str | None) -> dict:
    """ingest.uploads by LEA: {lea: [status, ...]}, read once the runs are done, from the
    Postgres warehouse when it has the table, else from the DuckDB file."""
    if profile == "postgres" and pg_warehouse:
        import psycopg2

        conn = psycopg2.connect(pg_warehouse)
        try:
            with conn.cursor() as cur:
                cur.execute("select to_regclass('ingest.uploads') is not null")
                if cur.fetchone()[0]:
                    cur.execute("select lea_id, status from ingest.uploads")
                    rows = cur.fetchall()
                    return {"source": "postgres", "by_lea": _group(rows)}
        finally:
            conn.close()
    statuses = common.poll_statuses(duckdb_file)
    rows = [(lea, s) for lea, items in statuses.items() for _, s, _ in items]
    source = "duckdb file" if duckdb_file.exists() else "none"
    return {"source": source, "by_lea": _group(rows)}


def _group(rows) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lea, status in rows:
        out.setdefault(lea, []).append(status)
    return out


def without_password(dsn: str, database: str) -> tuple[str, str]:
    """(the URL of `database` on the server of `dsn` with no password, the password)."""
    url = urlsplit(dsn)
    netloc = f"{url.username}@{url.hostname}:{url.port}"
    return urlunsplit((url.scheme, netloc, f"/{database}", "", "")), url.password or ""


# -- the morning --------------------------------------------------------------------------------


def morning(args, leas: list[Lea], uploads: dict[str, Path], work: Path, dsn: str) -> dict:
    from rostering_demo.embedded_sftp import EmbeddedSftpServer

    window = args.window_minutes * 60
    result: dict = {}
    pg: dict[str, str] = {}
    warehouse_env: dict[str, str] = {}
    pg_warehouse = None
    if dsn:
        pg = common.postgres_database(dsn, "dagster")
        common.postgres_database(dsn, "warehouse")
        url, password = without_password(dsn, "warehouse")
        warehouse_env = {"ROSTERING_WAREHOUSE_DSN": url, "PGPASSWORD": password}
        pg_warehouse = dsn.rsplit("/", 1)[0] + "/warehouse"
        result["warehouse_dsn"] = url
    instance_kind = "postgres-pooled" if dsn else "sqlite"
    with ExitStack() as sftp_server:
        sftp_pid = None
        if args.sftp == "openssh":
            sshd = sftp_server.enter_context(common.openssh_sftp())
            sftp_root, sftp_pid = sshd.root, sshd.pid
            env = {**common.pipeline_env(work, sshd), "ROSTERING_SFTP_KEY_FILE": str(sshd.key_file)}
        else:
            sftp_root = work / "sftp"
            sftp_root.mkdir(parents=True)
            server = sftp_server.enter_context(EmbeddedSftpServer(sftp_root))
            env = common.pipeline_env(work, server)
        for lea in leas:
            for sub in ("inbox", "outbox", "processed"):
                (sftp_root / lea.lea_id / sub).mkdir(parents=True, exist_ok=True)
        env.update({**pg, **warehouse_env})
        home = common.dagster_home(work, instance_kind, args.instance_yaml)
        env["DAGSTER_HOME"] = str(home)
        env.update(common.bytecode_env())
        os.environ.update(pg)  # this process reads the same instance
        log = work / "dagster_dev.log"
        with ExitStack() as stack:
            port, pid = stack.enter_context(common.dagster_dev_process(env, log))
            sampler = Sampler(pid, dsn or None, sftp_pid)
            sampler.start()
            stack.callback(sampler.join, 10)
            stack.callback(sampler.stopping.set)
            result["webserver_ready"] = common.wait_http(port, 300)
            time.sleep(5)  # the daemon's first (empty) sensor tick passes, as in production
            start = time.time() + 1
            schedule = [
                (lea.landing_share * window, lea.lea_id, uploads[lea.lea_id]) for lea in leas
            ]
            cpu_before = sampler.cpu()
            if dsn:
                pg_before = pg_counters(dsn, args.pg_statements, reset=True)
            lander = Lander(sftp_root, schedule, start)
            lander.start()
            stack.callback(lander.join, 60)
            stack.callback(lander.stopping.set)
            after = datetime.fromtimestamp(start, UTC) - timedelta(seconds=1)
            with common.dagster_instance(home) as instance:
                seen = wait_runs(
                    instance, lander, {lea.lea_id for lea in leas}, after, args.timeout
                )
                result.update(run_figures(instance, seen["records"]))
                result["sensor_ticks"] = sensor_ticks(instance, start, time.time())
            result["cpu"] = cpu_spent(cpu_before, sampler.cpu(), args.sftp)
            if dsn:
                pg_after = pg_counters(dsn, args.pg_statements)
                pg_after["sessions"] = {
                    db: n - pg_before["sessions"].get(db, 0)
                    for db, n in pg_after["sessions"].items()
                    if n - pg_before["sessions"].get(db, 0)
                }
                result["pg"] = pg_after
            result["applied"] = seen["applied"]
            result["timed_out"] = seen["timed_out"]
            result["other_runs"] = seen["other_runs"]
            result["landed"] = dict(lander.landed)
            result["lander_error"] = lander.error
            sampler.stopping.set()
            sampler.join(10)
            result["peak_rss_mb"] = sampler.max_rss
            result["peak_pss_mb"] = sampler.max_pss
            result["max_processes"] = sampler.max_processes
            result["max_pg_connections"] = sampler.max_pg_connections
            result["max_pg_connections_by_db"] = sampler.max_pg_by_db
            result["max_pg_all_connections"] = sampler.max_pg_all_connections
            result["peak_pg_pss_mb"] = sampler.max_pg_pss
            result["sampler_error"] = sampler.error
            result["samples"] = sampler.series
        common.keep_log(log, f"statewide_{args.profile}_dagster_dev.log")
    # dagster dev has stopped: nobody holds the DuckDB file now
    result["warehouse"] = warehouse_statuses(args.profile, work / "warehouse.duckdb", pg_warehouse)
    return result


def summarise(args, leas: list[Lea], r: dict) -> tuple[list[list[object]], dict]:
    landed, applied = r["landed"], r["applied"]
    latencies = {lea: applied[lea][0] - landed[lea] for lea in applied if lea in landed}
    first, last = min(landed.values(), default=math.nan), max(landed.values(), default=math.nan)
    done = max((a[0] for a in applied.values()), default=math.nan)
    once_instance = sum(
        1 for lea in leas if r["applied_decisions"].get(lea.lea_id, []).count("apply") == 1
    )
    by_lea = r["warehouse"]["by_lea"]
    once_warehouse = sum(1 for lea in leas if by_lea.get(lea.lea_id, []).count("applied") == 1)
    biggest = leas[0]
    figures = {
        "wall_first_landing_to_last_applied": done - first,
        "wall_last_landing_to_last_applied": done - last,
        "landing_to_applied_p50": percentile(list(latencies.values()), 50),
        "landing_to_applied_p95": percentile(list(latencies.values()), 95),
        "landing_to_applied_max": max(latencies.values(), default=math.nan),
        "biggest_lea_landing_to_applied": latencies.get(biggest.lea_id, math.nan),
        "overhead_median": common.median(r["overheads"]),
        "launch_median": common.median(r["launches"]),
        "in_run_overhead_median": common.median(r["in_run_overheads"]),
        "run_median": common.median(r["run_durations"]),
        "steps_median": common.median(r["step_sums"]),
        "queue_median": common.median(r["queue_delays"]),
        "applied_once_instance": once_instance,
        "applied_once_warehouse": once_warehouse,
    }
    n = len(leas)
    rows: list[list[object]] = [
        ["LEAs landed / applied", f"{len(landed)} / {len(applied)} of {n}"],
        ["first landing -> last applied, s", figures["wall_first_landing_to_last_applied"]],
        ["last landing -> last applied, s", figures["wall_last_landing_to_last_applied"]],
        ["landing -> applied p50, s", figures["landing_to_applied_p50"]],
        ["landing -> applied p95, s", figures["landing_to_applied_p95"]],
        ["landing -> applied max, s", figures["landing_to_applied_max"]],
        [
            f"biggest LEA ({biggest.students:,} students) landing -> applied, s",
            figures["biggest_lea_landing_to_applied"],
        ],
        ["per-run overhead median (launched -> ended - steps), s", figures["overhead_median"]],
        ["  of which launch (launched -> run started), s", figures["launch_median"]],
        ["  of which in the run (started -> ended - steps), s", figures["in_run_overhead_median"]],
        ["run duration median (started -> ended), s", figures["run_median"]],
        ["steps sum median, s", figures["steps_median"]],
        ["queue (created -> launched) median, s", figures["queue_median"]],
        [
            "inbox sensor ticks: count, median / max s",
            (
                f"{len(ticks)}, {common.median(ticks):.2f} / {max(ticks):.2f}"
                if (ticks := r.get("sensor_ticks"))
                else "none"
            ),
        ],
        ["peak RSS, dagster dev's process tree, MB", r["peak_rss_mb"]],
        ["peak PSS, dagster dev's process tree, MB", r["peak_pss_mb"]],
        ["most processes in the tree at once", int(r["max_processes"])],
    ]
    if args.profile == "postgres":
        rows += [
            [
                "max Postgres connections of dagster dev's tree (by database)",
                f"{r['max_pg_connections']} ("
                + ", ".join(f"{d} {n}" for d, n in sorted(r["max_pg_connections_by_db"].items()))
                + ")",
            ],
            ["max Postgres client connections, all but the sampler", r["max_pg_all_connections"]],
            ["peak PSS, Postgres server, MB", r["peak_pg_pss_mb"]],
            [
                "Postgres sessions opened during the morning (by database)",
                ", ".join(f"{d} {n:,}" for d, n in sorted(r["pg"]["sessions"].items())),
            ],
        ]
    cpu = r["cpu"]
    window = cpu["machine_busy"] + cpu["machine_idle"]
    rows.append(
        [
            "CPU of the machine, first landing -> last applied: busy / idle, s",
            f"{cpu['machine_busy']:,.0f} / {cpu['machine_idle']:,.0f}"
            f" ({cpu['machine_busy'] / window:.0%} busy)"
            if window
            else "n/a",
        ]
    )
    for name, seconds in cpu["by_role"].items():
        per_run = f", {seconds / r['runs']:.2f} s a run" if r["runs"] else ""
        rows.append([f"  CPU s: {name}", f"{seconds:,.1f}{per_run}"])
    statuses = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r["statuses"].items()))
    others = "; ".join(
        f"{job} {count} ({seconds:,.0f} s in all)"
        for job, (count, seconds) in sorted(r.get("other_runs", {}).items())
    )
    rows += [
        ["runs", f"{r['runs']} ({statuses or 'none'})"],
        ["other runs meanwhile (job: runs, run time)", others or "none"],
        ["failed runs", r["failed_runs"]],
        ["asset checks failed", f"{r['failed_checks']} of {r['checks']}"],
        ["applied exactly once (instance)", f"{once_instance} of {n}"],
        [
            f"applied exactly once (warehouse: {r['warehouse']['source']})",
            f"{once_warehouse} of {n}",
        ],
    ]
    if r["timed_out"]:
        rows.append(["TIMED OUT", f"after {args.timeout:.0f} s"])
    for key in ("lander_error", "sampler_error"):
        if r.get(key):
            rows.append([key, r[key]])
    return rows, figures


def main() -> None:
    common.stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leas", type=int, default=STATE_LEAS, help="LEAs (evenly spaced ranks)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every LEA's size")
    parser.add_argument(
        "--window-minutes",
        type=float,
        help=f"landing window (default {STATE_WINDOW_MINUTES:.0f} min x LEAs / {STATE_LEAS})",
    )
    parser.add_argument("--profile", choices=("embedded", "postgres"), default="embedded")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument(
        "--sftp",
        choices=("embedded", "openssh"),
        default="embedded",
        help="the SFTP server the LEAs land on: the demo's asyncssh server inside this script,"
        " or OpenSSH's sshd (scripts/start_sshd.sh; root and Debian's openssh-server)",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for the runs (default window + 30 min)"
    )
    parser.add_argument("--histogram", action="store_true", help="print the state's sizes only")
    parser.add_argument("--generate-only", action="store_true", help="fill the upload cache only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--instance-yaml",
        type=Path,
        help="instance settings over the profile's (all but storage on postgres), e.g. the"
        " opt-in forkserver launcher: cat deploy/dagster.yaml deploy/forkserver_launcher.yaml",
    )
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="postgres profile: load pg_stat_statements and print the statements that took the"
        " most server time during the morning",
    )
    args = parser.parse_args()
    if args.window_minutes is None:
        args.window_minutes = STATE_WINDOW_MINUTES * args.leas / STATE_LEAS
    if args.timeout is None:
        args.timeout = args.window_minutes * 60 + 1800

    leas = choose_leas(args.leas, args.scale, args.seed)
    table = common.print_table(
        f"Texas-like state (seed {args.seed}): LEA sizes",
        ("size", "LEAs", "students"),
        histogram(state_sizes(args.seed)),
    )
    table += common.print_table(
        f"This run: {len(leas)} LEAs at evenly spaced ranks, scale {args.scale:g}"
        f" (at least {MIN_SCALED} students)",
        ("size", "LEAs", "students"),
        histogram([lea.students for lea in leas]),
    )
    if args.histogram:
        return

    started = time.monotonic()
    common.OUT.mkdir(parents=True, exist_ok=True)
    total = sum(lea.students for lea in leas)
    print(f"… generating/caching {len(leas)} uploads, {total:,} students", file=sys.stderr)
    uploads = {}
    for n, lea in enumerate(leas, 1):
        uploads[lea.lea_id] = common.upload_dir(lea.lea_id, lea.students, 1)
        if n % 100 == 0:
            print(f"… {n}/{len(leas)} uploads ready", file=sys.stderr, flush=True)
    generate_seconds = time.monotonic() - started
    if args.generate_only:
        print(f"uploads cached under {common.DATA} in {generate_seconds:.0f}s")
        return

    result: dict = {
        "profile": args.profile,
        "instance_yaml": str(args.instance_yaml or ""),
        "sftp": args.sftp,
        "leas": len(leas),
        "scale": args.scale,
        "seed": args.seed,
        "students": total,
        "window_minutes": args.window_minutes,
        "sizes": {lea.lea_id: lea.students for lea in leas},
        "generate_seconds": generate_seconds,
        "load_before": os.getloadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="statewide_", dir=common.OUT))
    try:
        with ExitStack() as servers:
            dsn = (
                servers.enter_context(
                    common.postgres_server(STATEMENTS_OPTIONS if args.pg_statements else "")
                )
                if args.profile == "postgres"
                else ""
            )
            print(
                f"… {args.profile} profile: {len(leas)} LEAs landing over"
                f" {args.window_minutes:g} min",
                file=sys.stderr,
                flush=True,
            )
            result["morning"] = morning(args, leas, uploads, work, dsn)
    finally:
        if args.keep:
            print(f"… kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    result["script_seconds"] = time.monotonic() - started
    result["driver_peak_rss_mb"] = common.peak_rss_mb()

    rows, figures = summarise(args, leas, result["morning"])
    result["figures"] = figures
    load = ", ".join(
        f"{a:.1f}/{b:.1f}" for a, b in zip(result["load_before"], result["load_after"], strict=True)
    )
    table += common.print_table(
        f"Statewide morning, {args.profile} profile"
        + (f" + {args.instance_yaml.name}" if args.instance_yaml else "")
        + (", OpenSSH sshd" if args.sftp == "openssh" else "")
        + f": {len(leas)} LEAs, {total:,} students,"
        f" landing over {args.window_minutes:g} min (overhead = launched -> ended minus the"
        f" sum of the run's steps); load average 1/5/15 min before/after: {load}",
        ("measure", "value"),
        rows,
    )
    statements = result["morning"].get("pg", {}).get("statements")
    if statements:
        pg = result["morning"]["pg"]
        table += common.print_table(
            f"Statements that took the most PostgreSQL time during the morning (of"
            f" {pg['statements_total_ms'] / 1000:,.1f} s in {pg['statements_calls']:,} calls)",
            ("database", "calls", "total ms", "mean ms", "rows", "statement"),
            [[db, c, round(ms), round(ms / c, 3), n, q] for db, c, ms, n, q in statements],
        )
    path = common.write_result(f"statewide_{args.profile}", result, table)
    print(
        f"written to {path.relative_to(common.REPO)}; script took {result['script_seconds']:.0f}s"
    )
    m = result["morning"]
    if m["failed_runs"] or m["timed_out"] or figures["applied_once_instance"] != len(leas):
        sys.exit(1)


if __name__ == "__main__":
    main()
