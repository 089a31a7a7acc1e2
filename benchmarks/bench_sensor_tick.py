"""What one inbox sensor tick costs over a state's LEA folders: the client's CPU (the code
server's, where the sensor runs), the SFTP server's CPU and the wall time of `list_inboxes`.

The tick is made every 5 s all day (the daemon's sensor loop), so its cost is paid whether
uploads land or not. Compared: a tick that reads every inbox (the first tick, and one every
ROSTERING_SENSOR_FULL_LISTING_SECONDS), and a tick between, which reads only the inboxes that
changed or hold files and lstats the rest (rostering_pipeline/quiet_inboxes.py), with no
inbox holding files and with `--busy` of them holding an upload (a morning: ~40 land a minute
and wait minutes for their run).

    uv run python benchmarks/bench_sensor_tick.py                 # 1,200 LEAs, OpenSSH's sshd
    uv run python benchmarks/bench_sensor_tick.py --sftp embedded # the demo's asyncssh server

`--sftp openssh` (the default) needs root (scripts/start_sshd.sh): its CPU is the sshd
processes' (the master's reaped children, after each tick's session ends). With `embedded`
the server runs in this process: its CPU is counted with the sensor's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import common
from bench_orchestration import plain_sftp
from bench_statewide import _processes, cpu_snapshot, tree

from rostering_pipeline.quiet_inboxes import CONFIRM_SECONDS, QuietInboxes
from rostering_pipeline.sftp import SftpResource


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process (with its reaped children) and its live descendants."""
    procs = _processes()
    snapshot = cpu_snapshot(tree(pid, procs), procs)
    return sum(own for _, own, _ in snapshot.values()) + snapshot.get(pid, ("", 0, 0))[2]


def _measure(sftp: SftpResource, quiet: QuietInboxes | None, server_cpu, repeat: int) -> dict:
    """Medians over `repeat` ticks. The client's CPU is this process's (paramiko's transport
    thread does the packets and the crypto): with the embedded server that includes the
    server's, and the server column is None."""
    client, server, wall = [], [], []
    for _ in range(repeat):
        p0, s0, w0 = time.process_time(), server_cpu and server_cpu(), time.perf_counter()
        sftp.list_inboxes(quiet)
        w1, p1 = time.perf_counter(), time.process_time()
        time.sleep(0.3)  # sshd's session processes end and are reaped
        server.append(server_cpu() - s0 if server_cpu else None)
        client.append(p1 - p0)
        wall.append(w1 - w0)
    return {
        "client_cpu": statistics.median(client),
        "server_cpu": statistics.median(server) if server_cpu else None,
        "wall": statistics.median(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leas", type=int, default=1200)
    parser.add_argument("--busy", type=int, default=100, help="inboxes holding an upload")
    parser.add_argument("--sftp", choices=("openssh", "embedded"), default="openssh")
    parser.add_argument("--repeat", type=int, default=5, help="ticks of each kind (median)")
    args = parser.parse_args()
    from rostering_demo.embedded_sftp import EmbeddedSftpServer

    with ExitStack() as stack:
        if args.sftp == "openssh":
            server = stack.enter_context(common.openssh_sftp())
            root = server.root
            sftp = SftpResource(
                host=server.host,
                port=server.port,
                username=server.username,
                private_key_path=str(server.key_file),
                known_hosts_path=str(server.known_hosts),
            )
            pid = server.pid
            server_cpu = lambda: _tree_cpu(pid)  # noqa: E731
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=common.OUT)))
            work = root / "work"
            work.mkdir()
            root = root / "sftp"
            root.mkdir()
            server = stack.enter_context(EmbeddedSftpServer(root))
            sftp = plain_sftp(common.pipeline_env(work, server))
            server_cpu = None
        leas = [str(480001 + i) for i in range(args.leas)]
        for lea in leas:
            (root / lea / "inbox").mkdir(parents=True)
        rows = []
        every = _measure(sftp, None, server_cpu, args.repeat)
        rows.append(["every inbox read (each tick before; a full tick now)", 0, every])
        quiet = QuietInboxes(full_every_seconds=3600)
        sftp.list_inboxes(quiet)
        time.sleep(CONFIRM_SECONDS + 0.1)
        sftp.list_inboxes(quiet)  # confirms the empty inboxes' times
        rows.append(["between full ticks", 0, _measure(sftp, quiet, server_cpu, args.repeat)])
        for lea in leas[:: max(1, args.leas // max(1, args.busy))][: args.busy]:
            for name in common.CSV_FILES:
                (root / lea / "inbox" / name).write_text("x\n")
        rows.append(
            ["between full ticks", args.busy, _measure(sftp, quiet, server_cpu, args.repeat)]
        )
    table = common.print_table(
        f"One inbox sensor tick over {args.leas:,} LEA folders, SFTP server: {args.sftp} "
        f"(median of {args.repeat}; the tick is made every 5 s)",
        (
            "tick",
            "inboxes holding files",
            "sensor CPU s" if args.sftp == "openssh" else "sensor + server CPU s",
            "server CPU s",
            "wall s",
        ),
        [
            [
                what,
                busy,
                m["client_cpu"],
                "(with the sensor's)" if m["server_cpu"] is None else m["server_cpu"],
                m["wall"],
            ]
            for what, busy, m in rows
        ],
    )
    payload = {"leas": args.leas, "sftp": args.sftp, "rows": rows}
    path = common.write_result("sensor_tick", payload, table)
    print(f"written to {path.relative_to(common.REPO)}")


if __name__ == "__main__":
    main()
