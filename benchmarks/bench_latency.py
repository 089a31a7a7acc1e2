"""Landing-to-applied latency through a real Dagster deployment.

`dagster dev` runs in its own process group against a temp DAGSTER_HOME holding
deploy/dagster.yaml, with the sensor as configured (a tick every 5 s, the daemon's loop).
Uploads go over SFTP (paramiko, as an LEA would: each file to a temporary name, renamed, then
the `ready` marker) to the embedded server; the clock starts when the `ready` marker is
written (the upload is complete) and stops at the time Dagster records the run's
applied_roster materialization, which follows the apply's commit (polled from the instance
every 0.2 s; the warehouse is not opened while runs work, since DuckDB lets one process at a
time have the file). Each upload's status in ingest.uploads is read once all runs are done.

Measured: 10 consecutive daily uploads of one LEA (days 2..11, after day 1 as a warm-up),
then a 200,000-student LEA's day-2, 3 and 4 uploads (its day 1 applied first). Each upload is
split into: waiting for the sensor (landing -> run created), queue (created -> started),
the run (started -> ended, with its steps; the report step runs after the apply commits),
and run start -> applied.

    uv run python benchmarks/bench_latency.py                      # 10 x 5,000 + one 200k
    uv run python benchmarks/bench_latency.py --uploads 3 --big 0  # quick
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from rostering_pipeline.defs.ingest.sensors import TICK_SECONDS  # noqa: E402

SMALL_LEA, BIG_LEA = "301001", "301002"


def sftp_upload(sftp, lea_id: str, folder: Path) -> float:
    """Send the six files, then `ready`; returns the wall clock (epoch) when ready landed."""
    for name in common.CSV_FILES:
        if (folder / name).exists():
            sftp.write_bytes(f"/{lea_id}/inbox/{name}", (folder / name).read_bytes())
    sftp.write_bytes(f"/{lea_id}/inbox/ready", b"")
    return time.time()


def wait_applied(instance, lea_id: str, landed: float, timeout: float) -> tuple:
    """Poll Dagster's event log until a run of `lea_id` created after `landed` records its
    applied_roster materialization (written after the apply's transaction commits);
    (epoch of that event, upload_id, decision). The warehouse itself is not opened while the
    run works: DuckDB lets one process at a time have the file, so polling it would make the
    run wait for the benchmark."""
    import dagster as dg

    after = datetime.fromtimestamp(landed - 1, UTC)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in instance.get_run_records(
            dg.RunsFilter(tags={"lea_id": lea_id}, created_after=after)
        ):
            event = common.applied_event(instance, record.dagster_run.run_id)
            if event is not None:
                metadata = event.asset_materialization.metadata
                return event.timestamp, metadata["upload_id"].value, metadata["decision"].value
        time.sleep(0.2)
    raise TimeoutError(f"LEA {lea_id}: no upload applied within {timeout:.0f}s")


def run_breakdown(instance, lea_id: str, landed: float, seen: float) -> dict:
    """From the instance: when the sensor created the run, when it started and ended, and
    how long each step took (STEP_START to STEP_SUCCESS)."""
    import dagster as dg

    deadline = time.monotonic() + 120
    while True:  # the report step runs after the apply: wait (bounded) for the run's end
        records = instance.get_run_records(
            dg.RunsFilter(tags={"lea_id": lea_id}), limit=1, order_by="create_timestamp"
        )
        if not records:
            return {}
        rec = records[0]
        if rec.end_time or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    steps = common.step_durations(instance, rec.dagster_run.run_id)
    created = rec.create_timestamp.timestamp()
    return {
        "run_id": rec.dagster_run.run_id,
        "status": str(rec.dagster_run.status),
        "sensor_wait": created - landed,
        "queue": (rec.start_time or created) - created,
        "run": (rec.end_time or seen) - (rec.start_time or created),
        "start_to_applied": seen - (rec.start_time or created),
        "steps": steps,
    }


def final_statuses(warehouse: Path) -> dict[str, str]:
    """Each upload's status in ingest.uploads once the runs are done (bounded retries while a
    run's report step still holds the file)."""
    for _ in range(40):
        statuses = common.poll_statuses(warehouse)
        if statuses:
            return {u: status for rows in statuses.values() for u, status, _ in rows}
        time.sleep(0.25)
    return {}


def main() -> None:
    common.stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=10, help="consecutive small uploads")
    parser.add_argument("--small", type=int, default=5000, help="students of the small LEA")
    parser.add_argument(
        "--big", type=int, default=200_000, help="students of the big LEA (0: skip)"
    )
    parser.add_argument(
        "--big-uploads", type=int, default=3, help="daily uploads of the big LEA after day 1"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="per upload, seconds")
    parser.add_argument("--cold-bytecode", action="store_true")
    args = parser.parse_args()

    started = time.monotonic()
    print("… generating/caching uploads", file=sys.stderr, flush=True)
    small = [common.upload_dir(SMALL_LEA, args.small, d) for d in range(1, args.uploads + 2)]
    big_days = range(1, args.big_uploads + 2)
    big = [common.upload_dir(BIG_LEA, args.big, d) for d in big_days] if args.big else []

    from rostering_demo.embedded_sftp import EmbeddedSftpServer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_orchestration import plain_sftp

    result: dict = {"small_students": args.small, "big_students": args.big, "uploads": []}
    work = Path(tempfile.mkdtemp(prefix="latency_", dir=common.OUT))
    try:
        sftp_root = work / "sftp"
        for lea in (SMALL_LEA, BIG_LEA):
            for sub in ("inbox", "outbox", "processed"):
                (sftp_root / lea / sub).mkdir(parents=True)
        warehouse = work / "warehouse.duckdb"
        with EmbeddedSftpServer(sftp_root) as server:
            env = common.pipeline_env(work, server)
            home = common.dagster_home(work)
            env["DAGSTER_HOME"] = str(home)
            env.update(common.bytecode_env(args.cold_bytecode))
            sftp = plain_sftp(env)
            with (
                common.dagster_dev(env, work / "dagster_dev.log") as port,
                common.dagster_instance(home) as instance,
            ):
                result["webserver_ready_s"] = common.wait_http(port, 180)
                print(f"… dagster dev up on :{port}", file=sys.stderr, flush=True)

                def one(lea: str, folder: Path, label: str, timeout: float) -> dict:
                    landed = sftp_upload(sftp, lea, folder)
                    seen, upload_id, status = wait_applied(instance, lea, landed, timeout)
                    row = {
                        "label": label,
                        "lea_id": lea,
                        "upload_id": upload_id,
                        "decision": status,
                        "latency": seen - landed,
                        **run_breakdown(instance, lea, landed, seen),
                    }
                    print(
                        f"   {label}: {status} {row['latency']:.1f}s after landing",
                        file=sys.stderr,
                        flush=True,
                    )
                    return row

                # day 1 warms up the daemon, the code location and the warehouse
                result["warmup"] = one(SMALL_LEA, small[0], "small day 1 (warm-up)", 300)
                for day, folder in enumerate(small[1:], start=2):
                    result["uploads"].append(
                        one(SMALL_LEA, folder, f"small day {day}", args.timeout)
                    )
                if big:
                    result["big_day1"] = one(BIG_LEA, big[0], "200k day 1", 600)
                    result["big"] = [
                        one(BIG_LEA, folder, f"200k day {day}", args.timeout)
                        for day, folder in enumerate(big[1:], start=2)
                    ]
            decided = final_statuses(warehouse)
            rows = [result["warmup"], *result["uploads"]]
            rows += [result["big_day1"], *result["big"]] if big else []
            for r in rows:
                r["decision"] = decided.get(r["upload_id"], f"not decided ({r['decision']})")
    finally:
        common.keep_log(work / "dagster_dev.log", "latency_dagster_dev.log")
        shutil.rmtree(work, ignore_errors=True)
    result["script_seconds"] = time.monotonic() - started

    def line(r: dict) -> list:
        steps = r.get("steps", {})
        return [
            r["label"],
            r["decision"],
            r["latency"],
            r.get("sensor_wait", float("nan")),
            r.get("queue", float("nan")),
            r.get("run", float("nan")),
            r.get("start_to_applied", float("nan")),
            " ".join(f"{k.split('.')[-1]}={v:.1f}" for k, v in steps.items()),
        ]

    rows = [line(r) for r in result["uploads"]]
    latencies = [r["latency"] for r in result["uploads"]]
    summary = [
        [
            f"{args.small:,}-student LEA, {len(latencies)} uploads",
            common.median(latencies),
            max(latencies),
            common.median([r["sensor_wait"] for r in result["uploads"]]),
            common.median([r["run"] for r in result["uploads"]]),
        ]
    ]
    if big:
        rows += [line(result["big_day1"]), *(line(b) for b in result["big"])]
        big_latencies = [b["latency"] for b in result["big"]]
        summary.append(
            [
                f"{args.big:,}-student LEA, {len(big_latencies)} daily uploads",
                common.median(big_latencies),
                max(big_latencies),
                common.median([b["sensor_wait"] for b in result["big"]]),
                common.median([b["run"] for b in result["big"]]),
            ]
        )
    header = (
        "upload", "decision", "latency s", "sensor wait s", "queue s", "run s",
        "run start to applied s",
        "steps (s)",
    )  # fmt: skip
    table = common.print_table(
        "Landing (ready written) to applied (applied_roster materialized), dagster dev, sensor"
        f" minimum interval {TICK_SECONDS} s",
        header,
        rows,
    )
    table += common.print_table(
        "Summary",
        ("uploads", "median latency s", "max latency s", "median sensor wait s", "median run s"),
        summary,
    )
    path = common.write_result("latency", result, table)
    took = result["script_seconds"]
    print(f"written to {path.relative_to(common.REPO)}; script took {took:.0f}s")


if __name__ == "__main__":
    main()
