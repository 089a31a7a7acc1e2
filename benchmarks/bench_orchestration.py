"""Orchestration cost: many small LEAs through the sensor and Dagster runs.

Three measurements over the same N synthetic LEAs (500 students each, day 1, `ready` marker):

1. in-process: one `sync_once` (sensor pass + every run via `execute_in_process`) against a
   real Dagster instance (temp DAGSTER_HOME with deploy/dagster.yaml), the embedded SFTP
   server and a DuckDB file;
2. direct: the same work as plain function calls in one process, no Dagster (list the
   inbox, download and archive, record, validate, plan, apply, reconcile, report, clear);
   per-run overhead = run duration - direct duration of the same LEA;
3. daemon (unless --daemon-leas 0): `dagster dev` started in its own process group, the
   sensor as configured (a tick every 5 s), runs launched by the daemon through the
   queued run coordinator; wall time from landing to the last applied_roster
   materialization (Dagster records it after the apply's commit), run durations from the
   instance's run records; the warehouse is read once, after the runs.

Also times one sensor listing (the whole tick's SFTP work) over 1,200 LEA folders.

`--instance` picks the Dagster instance's storage: `sqlite` (deploy/dagster.yaml, the
default), `postgres` (dagster-postgres as shipped: a new connection per query) or
`postgres-pooled` (deploy/postgres/dagster.yaml); for the last two the script starts a
throwaway PostgreSQL from Debian's packages (scripts/start_postgres.sh --durable, fsync on)
and stops it at the end. The table's title carries the load average before and after.

    uv run python benchmarks/bench_orchestration.py              # 50 in-process, 8 daemon, ~8 min
    uv run python benchmarks/bench_orchestration.py --leas 200 --daemon-leas 0  # target, ~20 min
    uv run python benchmarks/bench_orchestration.py --leas 10 --daemon-leas 40 --daemon-timeout 900
    uv run python benchmarks/bench_orchestration.py --leas 30 --daemon-leas 0 --listing-leas 0 \
        --instance postgres-pooled    # per-run overhead on each storage (also sqlite, postgres)

The daemon uses deploy/dagster.yaml (Dagster's own run launcher). To compare the opt-in
forkserver launcher, `cat deploy/dagster.yaml deploy/forkserver_launcher.yaml > fork.yaml`
and run the same command with and without `--instance-yaml fork.yaml`, interleaved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

STUDENTS = 500
SCRIPT = str(Path(__file__).resolve())


def lea_ids(n: int) -> list[str]:
    return [f"{200001 + i:06d}" for i in range(n)]


def sources(leas: list[str]) -> dict[str, Path]:
    return {lea: common.upload_dir(lea, STUDENTS, 1) for lea in leas}


def land_all(sftp_root: Path, uploads: dict[str, Path]) -> None:
    for lea, folder in uploads.items():
        for sub in ("outbox", "processed"):
            (sftp_root / lea / sub).mkdir(parents=True, exist_ok=True)
        common.land_upload(sftp_root, lea, folder, day=1)


def in_process(root: Path, uploads: dict[str, Path], instance: str, pg: dict[str, str]) -> dict:
    """sync_once over every LEA on a persistent instance (`instance`: common.INSTANCES; `pg`:
    the DAGSTER_PG_* variables of a Postgres one)."""
    import dagster as dg

    from rostering_demo.embedded_sftp import EmbeddedSftpServer
    from rostering_pipeline.definitions import defs
    from rostering_pipeline.runner import sync_once

    sftp_root = root / "sftp"
    sftp_root.mkdir(parents=True)
    land_all(sftp_root, uploads)
    with EmbeddedSftpServer(sftp_root) as server:
        env = {**common.pipeline_env(root, server), **pg}
        env["DAGSTER_HOME"] = str(common.dagster_home(root, instance))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            started = time.monotonic()
            with dg.DagsterInstance.get() as instance:
                loaded = defs()
                load_seconds = time.monotonic() - started
                runs = sync_once(loaded, instance, cursor_path=root / "cursor.json")
            total = time.monotonic() - started
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    statuses = common.poll_statuses(root / "warehouse.duckdb")
    applied = sum(1 for rows in statuses.values() if any(s == "applied" for _, s, _ in rows))
    return {
        "total": total,
        "load_defs": load_seconds,
        "runs": {r.lea_id: r.seconds for r in runs},
        "failed": [r.lea_id for r in runs if not r.success],
        "applied": applied,
    }


def direct(root: Path, uploads: dict[str, Path]) -> dict:
    """The same work per LEA as plain calls, one process, no Dagster."""
    from rostering_demo.embedded_sftp import EmbeddedSftpServer
    from rostering_pipeline import ledger
    from rostering_pipeline.ingest import clear_inbox, download_upload, inbox_files
    from rostering_pipeline.lea_settings import LeaSettingsResource
    from rostering_pipeline.outbox import deliver_report
    from rostering_pipeline.quality import record_rejections
    from rostering_pipeline.roster.apply import apply_upload
    from rostering_pipeline.roster.checks import dangling_references, reconcile
    from rostering_pipeline.roster.plan import plan_upload
    from rostering_pipeline.upload_spec.files import ENTITIES
    from rostering_pipeline.upload_spec.validate import validate_upload
    from rostering_pipeline.uploads import scan_inboxes, source_key
    from rostering_pipeline.warehouse import WarehouseResource

    sftp_root = root / "sftp"
    sftp_root.mkdir(parents=True)
    land_all(sftp_root, uploads)
    archive = root / "archive"
    warehouse = WarehouseResource(path=str(root / "warehouse.duckdb"))
    settings = LeaSettingsResource(path=str(common.REPO / "deploy" / "lea_settings.toml"))
    per_lea: dict[str, float] = {}
    with EmbeddedSftpServer(sftp_root) as server:
        env = common.pipeline_env(root, server)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            sftp = plain_sftp(env)
            started = time.monotonic()
            complete, _ = scan_inboxes(sftp.list_inboxes().inboxes, {}, time.time(), 120)
            listing = time.monotonic() - started
            for item in complete:
                t = time.monotonic()
                lea = item.lea_id
                with sftp.connected():  # as raw_upload does: one SSH connection
                    files = inbox_files(sftp, lea)
                    upload = download_upload(
                        sftp,
                        archive,
                        lea,
                        source_key(lea, files),
                        files,
                        received_at=datetime.now(UTC),
                    )
                    with warehouse.connect() as conn:
                        ledger.record_received(conn, archive, upload, datetime.now(UTC), "direct")
                    clear_inbox(sftp, upload)
                validated = validate_upload(lea, upload.read_files(), upload.received_at.date())
                with warehouse.connect() as conn:
                    record_rejections(conn, upload, validated.rejections, datetime.now(UTC))
                with warehouse.connect(read_only=True) as conn:
                    plan = plan_upload(conn, upload, validated, settings.for_lea(lea))
                with warehouse.connect() as conn:
                    plan = apply_upload(conn, upload, validated, plan, datetime.now(UTC))
                    assert not reconcile(conn, validated)
                    dangling_references(conn, lea)
                    for e in ENTITIES:
                        conn.execute(f"select count(*) from roster.{e} where lea_id = ?", [lea])
                deliver_report(sftp, upload, plan, validated.rejections)
                per_lea[lea] = time.monotonic() - t
            total = time.monotonic() - started
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return {"total": total, "listing": listing, "per_lea": per_lea}


def daemon(
    root: Path,
    uploads: dict[str, Path],
    timeout: float,
    cold: bool,
    instance: str,
    pg: dict[str, str],
    instance_yaml: Path | None = None,
) -> dict:
    """`dagster dev`: the sensor and the daemon launch one run process per upload."""

    from rostering_demo.embedded_sftp import EmbeddedSftpServer

    sftp_root = root / "sftp"
    sftp_root.mkdir(parents=True)
    for lea in uploads:
        for sub in ("inbox", "outbox", "processed"):
            (sftp_root / lea / sub).mkdir(parents=True, exist_ok=True)
    warehouse = root / "warehouse.duckdb"
    result: dict = {}
    with EmbeddedSftpServer(sftp_root) as server:
        env = {**common.pipeline_env(root, server), **pg}
        home = common.dagster_home(root, instance, instance_yaml)
        env["DAGSTER_HOME"] = str(home)
        env.update(common.bytecode_env(cold))
        os.environ.update(pg)  # this process reads the same instance
        with common.dagster_dev(env, root / "dagster_dev.log") as port:
            result["webserver_ready"] = common.wait_http(port, 180)
            # Let the daemon's first (empty) sensor tick pass, so landing starts a fresh
            # interval as it would in production.
            time.sleep(5)
            landed_at = datetime.now(UTC)
            land_all(sftp_root, uploads)
            with common.dagster_instance(home) as instance:
                finished = wait_finished(instance, set(uploads), landed_at, timeout)
                applied_at = {
                    lea: at - landed_at.timestamp()
                    for lea, at in applied_times(instance, finished).items()
                }
                records = instance.get_run_records()
                durations, queued, first_start, steps = [], [], None, []
                for rec in records:
                    if rec.start_time and rec.end_time:
                        durations.append(rec.end_time - rec.start_time)
                        queued.append(rec.start_time - rec.create_timestamp.timestamp())
                        if first_start is None or rec.start_time < first_start:
                            first_start = rec.start_time
                        steps.append(common.step_durations(instance, rec.dagster_run.run_id))
            common.keep_log(root / "dagster_dev.log", "orchestration_dagster_dev.log")
            result["wall"] = max(applied_at.values()) if applied_at else float("nan")
            statuses = common.poll_statuses(warehouse)
            result["applied"] = sum(
                any(s == "applied" for _, s, _ in statuses.get(lea, [])) for lea in applied_at
            )
            result["timed_out"] = len(finished) < len(uploads)
            result["run_durations"] = durations
            result["queue_delays"] = queued
            result["step_durations"] = steps
            result["first_run_start_after_landing"] = (
                first_start - landed_at.timestamp() if first_start else float("nan")
            )
            result["statuses"] = sorted({str(r.dagster_run.status) for r in records})
    return result


def wait_finished(instance, leas: set[str], after: datetime, timeout: float) -> dict[str, str]:
    """Poll run storage (every 2 s; the warehouse is not opened while runs work, since DuckDB
    lets one process at a time have the file) until every LEA has a finished run created
    after `after`; {lea: run_id} of the successful ones."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while True:
        records = instance.get_run_records(dg.RunsFilter(created_after=after))
        finished = {r.dagster_run.tags.get("lea_id"): r for r in records if r.end_time}
        if leas <= finished.keys() or time.monotonic() > deadline:
            return {
                lea: r.dagster_run.run_id
                for lea, r in finished.items()
                if lea in leas and r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            }
        time.sleep(2.0)


def applied_times(instance, runs: dict[str, str]) -> dict[str, float]:
    """When each run recorded its applied_roster materialization (after the apply's commit)."""
    events = {lea: common.applied_event(instance, run_id) for lea, run_id in runs.items()}
    return {lea: event.timestamp for lea, event in events.items() if event is not None}


def plain_sftp(env: dict[str, str]):
    """The SFTP resource as the pipeline configures it, with the password resolved (outside
    Dagster an EnvVar is not)."""
    from rostering_pipeline.sftp import SftpResource

    return SftpResource(
        host=env["ROSTERING_SFTP_HOST"],
        port=int(env["ROSTERING_SFTP_PORT"]),
        username=env["ROSTERING_SFTP_USER"],
        password=env["ROSTERING_SFTP_PASSWORD"],
        known_hosts_path=env["ROSTERING_SFTP_KNOWN_HOSTS"],
    )


def sensor_listing(n: int) -> dict:
    """One `list_inboxes` over n LEA folders (empty inboxes): the sensor tick's SFTP work."""
    from rostering_demo.embedded_sftp import EmbeddedSftpServer

    with tempfile.TemporaryDirectory(dir=common.OUT) as tmp:
        root = Path(tmp)
        sftp_root = root / "sftp"
        for lea in lea_ids(n):
            (sftp_root / lea / "inbox").mkdir(parents=True)
        with EmbeddedSftpServer(sftp_root) as server:
            env = common.pipeline_env(root, server)
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                sftp = plain_sftp(env)
                times = []
                for _ in range(3):
                    t = time.monotonic()
                    inboxes = sftp.list_inboxes().inboxes
                    times.append(time.monotonic() - t)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    return {"folders": len(inboxes), "seconds": min(times)}


def main() -> None:
    common.stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--leas", type=int, default=50, help="LEAs for in-process and direct (200: the target)"
    )
    parser.add_argument(
        "--daemon-leas", type=int, default=8, help="LEAs through dagster dev (0: skip)"
    )
    parser.add_argument("--daemon-timeout", type=float, default=540.0)
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (instance, warehouse, logs)"
    )
    parser.add_argument("--listing-leas", type=int, default=1200, help="0: skip")
    parser.add_argument(
        "--instance",
        choices=common.INSTANCES,
        default="sqlite",
        help="Dagster instance storage: deploy/dagster.yaml's SQLite, dagster-postgres as"
        " shipped, or deploy/postgres/dagster.yaml's pooled Postgres (on a throwaway durable"
        " PostgreSQL that the script starts and stops)",
    )
    parser.add_argument(
        "--instance-yaml",
        type=Path,
        help="the daemon's dagster.yaml (default deploy/dagster.yaml), e.g. another run launcher",
    )
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="run processes compile every module from source (this sandbox's default)",
    )
    args = parser.parse_args()

    common.OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    leas = lea_ids(max(args.leas, args.daemon_leas))
    print(f"… generating/caching {len(leas)} uploads of {STUDENTS} students", file=sys.stderr)
    uploads = sources(leas)
    result: dict = {
        "leas": args.leas,
        "students": STUDENTS,
        "instance": args.instance,
        "instance_yaml": str(args.instance_yaml or "deploy/dagster.yaml"),
    }
    result["load_before"] = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="orchestration_", dir=common.OUT))
    servers = ExitStack()
    try:
        dsn = servers.enter_context(common.postgres_server()) if args.instance != "sqlite" else ""

        def pg(name: str) -> dict[str, str]:
            return common.postgres_database(dsn, name) if dsn else {}

        chosen = {lea: uploads[lea] for lea in leas[: args.leas]}
        print(
            f"… in-process sync_once over {len(chosen)} LEAs ({args.instance} instance)",
            file=sys.stderr,
            flush=True,
        )
        result["in_process"] = in_process(
            work / "in_process", chosen, args.instance, pg("in_process")
        )
        print("… the same work as direct calls", file=sys.stderr, flush=True)
        result["direct"] = direct(work / "direct", chosen)
        if args.daemon_leas:
            chosen = {lea: uploads[lea] for lea in leas[: args.daemon_leas]}
            print(f"… dagster dev over {len(chosen)} LEAs", file=sys.stderr, flush=True)
            result["daemon"] = daemon(
                work / "daemon",
                chosen,
                args.daemon_timeout,
                args.cold_bytecode,
                args.instance,
                pg("daemon"),
                args.instance_yaml,
            )
        if args.listing_leas:
            print(f"… sensor listing over {args.listing_leas} folders", file=sys.stderr, flush=True)
            result["listing"] = sensor_listing(args.listing_leas)
    finally:
        servers.close()
        if args.keep:
            print(f"… kept {work} (DAGSTER_HOME: {work}/daemon/dagster_home)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["script_seconds"] = time.monotonic() - started
    result["load_after"] = os.getloadavg()

    ip, dr = result["in_process"], result["direct"]
    overhead = [ip["runs"][lea] - dr["per_lea"][lea] for lea in ip["runs"] if lea in dr["per_lea"]]
    rows = [
        [
            "in-process sync_once",
            args.leas,
            ip["total"],
            ip["total"] * 200 / args.leas / 60,
            common.median(list(ip["runs"].values())),
            max(ip["runs"].values()),
            common.median(overhead),
            max(overhead),
            f"{ip['applied']} applied, {len(ip['failed'])} failed",
        ],
        [
            "direct function calls",
            args.leas,
            dr["total"],
            dr["total"] * 200 / args.leas / 60,
            common.median(list(dr["per_lea"].values())),
            max(dr["per_lea"].values()),
            0.0,
            0.0,
            "-",
        ],
    ]
    if "daemon" in result:
        dm = result["daemon"]
        n = args.daemon_leas
        dm_over = [d - common.median(list(dr["per_lea"].values())) for d in dm["run_durations"]]
        rows.append(
            [
                "dagster dev (daemon)",
                n,
                dm["wall"],
                dm["wall"] * 200 / n / 60,
                common.median(dm["run_durations"]),
                max(dm["run_durations"], default=float("nan")),
                common.median(dm_over),
                max(dm_over, default=float("nan")),
                f"{dm['applied']} applied, first run start"
                f" {dm['first_run_start_after_landing']:.1f}"
                f" s after landing, queue median {common.median(dm['queue_delays']):.1f} s,"
                " steps sum median "
                f"{common.median([sum(s.values()) for s in dm['step_durations']]):.1f} s",
            ]
        )
    load = ", ".join(
        f"{a:.1f}/{b:.1f}" for a, b in zip(result["load_before"], result["load_after"], strict=True)
    )
    table = common.print_table(
        f"Orchestration, {STUDENTS}-student LEAs, {args.instance} instance (overhead = run"
        " duration - direct duration of the same LEA; daemon overhead against the median"
        f" direct duration; daemon's instance: {result['instance_yaml']}); load average"
        f" 1/5/15 min before/after: {load}",
        (
            "path",
            "LEAs",
            "wall s",
            "200 LEAs min (extrap.)",
            "run median s",
            "run max s",
            "overhead median s",
            "overhead max s",
            "notes",
        ),  # fmt: skip
        rows,
    )
    if ls := result.get("listing"):
        table += common.print_table(
            "Sensor tick SFTP work",
            ("LEA folders", "list_inboxes s"),
            [[ls["folders"], ls["seconds"]]],
        )
    path = common.write_result("orchestration", result, table)
    took = result["script_seconds"]
    print(f"written to {path.relative_to(common.REPO)}; script took {took:.0f}s")


if __name__ == "__main__":
    main()
