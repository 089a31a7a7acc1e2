"""Disaster recovery at scale: how long `rostering rebuild` takes to make a lost warehouse
again from the archive alone.

An archive of LEAS LEAs (STUDENTS students each) over DAYS daily uploads is made as the runs
make it (each upload archived by sha256, validated, planned, applied, its decision written to
its manifest), the warehouse is deleted, and the rebuild replays every decision in order.
Prints the time to make the archive (the live work, for comparison), the rebuild's time, its
rate, and whether the rebuilt roster matches the lost one row for row.

    uv run python benchmarks/bench_rebuild.py --leas 200 --students 500 --days 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

WORK = common.OUT / "rebuild"
COMPARED = ("roster.students", "roster.enrollments", "roster.staff", "roster.accounts",
            "roster.changes")  # fmt: skip


def live(leas: list[str], students: int, days: int, archive: Path, warehouse: Path) -> float:
    """Each upload as its run handles it, manifest included; returns the seconds taken."""
    from rostering_pipeline import ledger
    from rostering_pipeline.quality import record_rejections
    from rostering_pipeline.roster.apply import apply_upload
    from rostering_pipeline.roster.plan import plan_upload
    from rostering_pipeline.upload_spec.validate import validate_upload
    from rostering_pipeline.warehouse import WarehouseResource

    started = time.monotonic()
    with WarehouseResource(path=str(warehouse)).connect() as conn:
        for day in range(1, days + 1):
            for lea_id in leas:
                folder = common.upload_dir(lea_id, students, day)
                upload = common.make_local_upload(lea_id, folder, day, archive)
                now = upload.received_at.replace(hour=13)
                ledger.record_received(conn, archive, upload, now, "bench")
                validated = validate_upload(lea_id, upload.read_files(), upload.received_at.date())
                record_rejections(conn, upload, validated.rejections, now)
                plan = apply_upload(
                    conn, upload, validated, plan_upload(conn, upload, validated), now
                )
                ledger.append_decision(archive, upload, plan.recorded)
    return time.monotonic() - started


def snapshot(warehouse: Path) -> dict[str, list]:
    from rostering_pipeline.warehouse import WarehouseResource

    with WarehouseResource(path=str(warehouse)).connect(read_only=True) as conn:
        return {t: conn.execute(f"select * from {t} order by all").fetchall() for t in COMPARED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leas", type=int, default=200)
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    from rostering_pipeline.lea_settings import DEFAULT_SETTINGS
    from rostering_pipeline.rebuild import rebuild
    from rostering_pipeline.warehouse import WarehouseResource

    leas = [f"{300000 + i:06d}" for i in range(args.leas)]
    for day in range(1, args.days + 1):  # generate (cached) before any clock starts
        for lea_id in leas:
            common.upload_dir(lea_id, args.students, day)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    archive, lost, rebuilt = WORK / "archive", WORK / "lost.duckdb", WORK / "rebuilt.duckdb"
    live_seconds = live(leas, args.students, args.days, archive, lost)
    uploads = args.leas * args.days

    started = time.monotonic()
    with WarehouseResource(path=str(rebuilt)).connect() as conn:
        report = rebuild(archive, conn, lambda _: DEFAULT_SETTINGS)
    seconds = time.monotonic() - started
    same = snapshot(lost) == snapshot(rebuilt)

    common.print_table(
        "rostering rebuild from the archive",
        ["LEAs", "students each", "days", "uploads", "live work s", "rebuild s",
         "uploads/s", "decisions", "differing", "same roster"],
        [[args.leas, args.students, args.days, uploads, f"{live_seconds:.1f}", f"{seconds:.1f}",
          f"{uploads / seconds:.1f}", report.decisions, len(report.differing),
          "yes" if same else "NO"]],
    )  # fmt: skip
    print(
        f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; peak RSS {common.peak_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
