"""``imuflow status``: live table of every node's stats of a running graph."""

from __future__ import annotations

import argparse
import sys
import time

import zmq

from pipeline.runtime.bus import Subscriber
from pipeline.runtime.run_dir import find_run, live_runs

COLUMNS = [("node", "node", "{}"), ("state", "state", "{}"), ("in/s", "rate_in_hz", "{:.1f}"),
           ("out/s", "rate_out_hz", "{:.1f}"), ("blocks in", "blocks_in", "{}"),
           ("blocks out", "blocks_out", "{}"), ("lat p50 ms", "latency_ms_p50", "{:.2f}"),
           ("lat p99 ms", "latency_ms_p99", "{:.2f}"), ("gaps", "gaps", "{}"),
           ("drops", "drops", "{}"), ("bad", "bad_messages", "{}"),
           ("restarts", "restarts", "{}")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("--run", help="run name (default: your only running graph; required when "
                                 "more than one runs)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--list", action="store_true", help="list running graphs and exit")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a report")


def table(snap: dict) -> str:
    """Format a supervisor snapshot as a fixed-width table."""
    rows = [[c[0] for c in COLUMNS]]
    for s in snap["nodes"].values():
        row = []
        for _, key, fmt in COLUMNS:
            v = s.get(key)
            row.append("-" if v is None else fmt.format(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return f"graph '{snap['graph']}' ({snap['run_dir']})\n" + "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Subscribe to the supervisor's status and print tables."""
    if args.list:
        for r in live_runs():
            print(f"{r.name}\tpid {r.supervisor_pid}\t{r.config}\t{r.path}")
        return 0
    info = find_run(args.run)
    ctx = zmq.Context.instance()
    sub = Subscriber(ctx, [(f"ipc://{info.path}/supervisor.pub", "supervisor/status")])
    try:
        while True:
            if not sub.socket.poll(int(args.timeout * 1000), zmq.POLLIN):
                print(f"no status from run '{info.name}' within {args.timeout:g} s",
                      file=sys.stderr)
                return 1
            blk = sub.recv()
            if blk is None:
                continue
            text = table(blk.data)
            if args.once:
                print(text)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + text + "\n" if sys.stdout.isatty() else text + "\n")
            sys.stdout.flush()
            time.sleep(0.05)
    finally:
        sub.close()
