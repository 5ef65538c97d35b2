"""``imuflow run [CONFIG]``: run a graph until Ctrl-C or until every stream ends."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.runtime.graph import load_graph
from pipeline.runtime.log_setup import TERMINAL_STATUS_ENV
from pipeline.runtime.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                   help="graph YAML (default: configs/default.yaml, the simulated demo)")
    p.add_argument("--name", help="run name for `imuflow status`/`command` (default: graph name)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (default: run until Ctrl-C or the end)")
    p.add_argument("--quiet", action="store_true",
                   help="no status lines; only warnings and errors (this process and the nodes)")


def status_line(snap: dict) -> str:
    """One line: each node's output rate and state, plus the worst latency and gap counts."""
    parts = []
    lat = []
    gaps = 0
    for nid, s in snap["nodes"].items():
        rate = s.get("rate_out_hz") or s.get("rate_in_hz") or 0.0
        mark = "" if s.get("alive", True) else " DOWN"
        restarts = f" r{s['restarts']}" if s.get("restarts") else ""
        parts.append(f"{nid} {rate:.0f}/s{restarts}{mark}")
        if s.get("latency_ms_p99") is not None:
            lat.append(s["latency_ms_p99"])
        gaps += int(s.get("gaps", 0))
    tail = f" | latency p99 {max(lat):.2f} ms" if lat else ""
    return " > ".join(parts) + tail + f" | gaps {gaps}"


def run(args: argparse.Namespace) -> int:
    """Load, start and supervise the graph."""
    if args.quiet:  # the worker processes read the level from the environment
        os.environ["IMUFLOW_LOG_LEVEL"] = "WARNING"
        logging.getLogger().setLevel(logging.WARNING)
    else:  # one status line on the terminal: a headless viewer keeps its own to the debug log
        os.environ[TERMINAL_STATUS_ENV] = "1"
    graph = load_graph(args.config)
    tty = sys.stderr.isatty()

    def show(snap: dict) -> None:
        line = status_line(snap)
        sys.stderr.write(("\r\x1b[2K" + line) if tty else line + "\n")
        sys.stderr.flush()

    sup = Supervisor(graph, name=args.name, on_status=None if args.quiet else show)
    try:
        sup.start()
        end = time.monotonic() + args.duration if args.duration > 0 else None
        code = sup.run(until=(lambda: time.monotonic() >= end) if end else None)
    finally:
        sup.stop()  # also when Ctrl-C arrives during start-up
    if tty and not args.quiet:
        sys.stderr.write("\n")
    return code
