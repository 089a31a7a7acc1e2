"""`rostering`: the pipeline from a terminal (demo, sync, explain, rebuild, ui) for people
without the UI."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import dagster as dg

from .places import DEFAULT_DAGSTER_HOME, DEMO_DIR, REPO
from .runner import sync_once
from .settings import DEFAULT_ARCHIVE, env, warehouse_from_env
from .summary import print_summary
from .warehouse import WarehouseResource

DEMO = DEMO_DIR
INSTANCE_TEMPLATE = REPO / "deploy" / "dagster.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rostering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo",
        help="serve the sample LEAs from a local SFTP server on 127.0.0.1, sync them into "
        f"{shown(DEMO_DIR / 'warehouse.duckdb')}, and print what happened",
    )
    sync = commands.add_parser(
        "sync", help="one sensor pass plus the runs it requests, against the configured server"
    )
    sync.add_argument("--quiet-period", type=int, help="override the quiet period (seconds)")
    explain_cmd = commands.add_parser(
        "explain",
        help="a student's, class's or staff member's current roster and every change to it",
    )
    explain_cmd.add_argument("--lea", required=True, help="the LEA's 6-digit lea_id")
    target = explain_cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--student", help="the LEA's student_id")
    target.add_argument("--class", dest="class_id", help="the LEA's class_id")
    target.add_argument("--staff", help="the LEA's staff_id")
    rebuild_cmd = commands.add_parser(
        "rebuild",
        help="disaster recovery: a new warehouse from the archive alone (every upload's files "
        "and manifest), replaying every decision in the order it was made",
    )
    new_warehouse = rebuild_cmd.add_mutually_exclusive_group(required=True)
    new_warehouse.add_argument("--warehouse", help="the new DuckDB file to create (must not exist)")
    new_warehouse.add_argument(
        "--warehouse-dsn",
        help="or a new, empty PostgreSQL database (a libpq DSN without password: PGPASSWORD "
        "or ~/.pgpass)",
    )
    rebuild_cmd.add_argument(
        "--archive",
        help="the archive to read (default: ROSTERING_ARCHIVE, else "
        f"{shown(Path(DEFAULT_ARCHIVE))})",
    )
    status_cmd = commands.add_parser(
        "status",
        help="every LEA's latest upload and where it stands (applied, held, rejected, failed, "
        "stale), as the lea_status_board asset shows it; held uploads with how to decide them",
    )
    status_cmd.add_argument(
        "--max-school-days",
        type=int,
        default=3,
        help="an LEA with no upload for more school days than this is stale (default 3)",
    )
    ui = commands.add_parser("ui", help="the Dagster UI on the demo deployment")
    ui.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo_harness().demo()
    if args.command == "sync":
        if args.quiet_period is not None:
            os.environ["ROSTERING_QUIET_PERIOD_SECONDS"] = str(args.quiet_period)
        return sync_command()
    if args.command == "explain":
        return explain_command(args)
    if args.command == "rebuild":
        if args.warehouse_dsn:
            return rebuild_command(WarehouseResource(postgres_dsn=args.warehouse_dsn), args.archive)
        return rebuild_command(WarehouseResource(path=args.warehouse), args.archive)
    if args.command == "status":
        return status_command(args.max_school_days)
    if args.command == "ui":
        return _demo_harness().ui_command(args.port)
    return 2


def _demo_harness() -> ModuleType:
    """The demo (its sample LEAs served by a loopback SFTP server) lives beside the product,
    in a checkout of the repository: rostering_demo/ and data/sample_uploads/."""
    try:
        return importlib.import_module("rostering_demo.demo")
    except ModuleNotFoundError as missing:
        raise SystemExit(
            "`rostering demo` and `rostering ui` need the demo harness (rostering_demo/ and "
            f"asyncssh), and this install lacks {missing.name}: run them from a checkout of the "
            "repository with ./run demo and ./run ui (uv sync with its default dev group)."
        ) from None


def rebuild_command(warehouse: WarehouseResource, archive: str | None) -> int:
    """Replay the archive into a new warehouse: a DuckDB file that must not exist, or an
    empty PostgreSQL database."""
    from .lea_settings import DEFAULT_PATH, LeaSettingsResource
    from .rebuild import WarehouseNotEmpty, rebuild

    archive_root = Path(archive or env("ARCHIVE") or DEFAULT_ARCHIVE)
    name = "the PostgreSQL database" if warehouse.postgres_dsn else warehouse.path
    if not warehouse.postgres_dsn and Path(warehouse.path).exists():
        say(f"{name} exists: rebuild creates a new warehouse and never overwrites one.")
        return 1
    if not archive_root.is_dir():
        say(f"No archive at {archive_root}: pass --archive or set ROSTERING_ARCHIVE.")
        return 1
    settings = LeaSettingsResource(path=os.environ.get("ROSTERING_LEA_SETTINGS", DEFAULT_PATH))
    with warehouse.connect() as conn:
        try:
            report = rebuild(archive_root, conn, settings.for_lea)
        except WarehouseNotEmpty:
            say(
                f"{name} already holds uploads: rebuild writes into an empty warehouse and never"
                " overwrites one. Create a new database (createdb) and pass its DSN."
            )
            return 1
    say(
        f"Rebuilt {name} from {archive_root}: {report.uploads} uploads, "
        f"{report.decisions} decisions replayed."
    )
    for line in report.differing:
        say(f"  decided otherwise now: {line}")
    if report.undecided:
        say(
            f"  {len(report.undecided)} uploads were received but never decided (in flight when "
            "the warehouse was lost); replay each with the sync_upload job's replay_upload_id: "
            + ", ".join(report.undecided)
        )
    return 1 if report.differing else 0


def say(message: str) -> None:
    print(message, flush=True)


def instance_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copy(INSTANCE_TEMPLATE, target)
    return home


def load_defs() -> dg.Definitions:
    from .definitions import defs

    return defs()


def sync_command() -> int:
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME)
    os.environ["DAGSTER_HOME"] = str(instance_home(home))
    with dg.DagsterInstance.get() as instance:
        runs = sync_once(load_defs(), instance, cursor_path=home / "sync_cursor.json", progress=say)
    print_summary(warehouse_from_env(), runs, say)
    return 0 if all(r.success for r in runs) else 1


def explain_command(args: argparse.Namespace) -> int:
    from .roster.explain import explain, render

    kind, record_id = next(
        (k, v)
        for k, v in (("student", args.student), ("class", args.class_id), ("staff", args.staff))
        if v
    )
    warehouse = warehouse_from_env()
    if _missing(warehouse):
        return 1
    with warehouse.connect(read_only=True) as conn:
        say(render(explain(conn, args.lea, kind, record_id)))
    return 0


def shown(path: Path) -> str:
    """A path as an operator in the repository would type it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def status_command(max_school_days: int) -> int:
    """Exit 0 when every LEA is fine, 1 when one needs an operator (held, failed, rejected or
    stale), so a monitoring job can call it."""
    from datetime import UTC, datetime

    from .held import HeldUpload
    from .status_board import board_text, needs_attention, status_board

    warehouse = warehouse_from_env()
    if _missing(warehouse):
        return 1
    with warehouse.connect(read_only=True) as conn:
        board = status_board(conn, datetime.now(UTC).date(), max_school_days)
    if board.is_empty():
        say("No uploads yet.")
        return 0
    for line in board_text(board):
        say(line)
    for row in board.filter(board["state"] == "held").iter_rows(named=True):
        if row["held_by"] == "safeguard":
            say("")
            say(HeldUpload(row["lea_id"], row["upload_id"], row["reason"] or "").action())
    return 1 if needs_attention(board).height else 0


def _missing(warehouse: WarehouseResource) -> bool:
    """Whether the deployment's warehouse (else the demo's, the one `rostering ui` shows) is a
    DuckDB file that does not exist yet; says so."""
    path = Path(warehouse.path)
    if warehouse.backend == "duckdb" and not path.exists():
        say(
            f"No warehouse at {path}: run the demo first (./run demo), or set "
            "ROSTERING_WAREHOUSE to the deployment's DuckDB file (or ROSTERING_WAREHOUSE_DSN "
            "to its PostgreSQL database)."
        )
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
