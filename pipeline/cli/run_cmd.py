"""``imuflow run [CONFIG]``: run a graph until Ctrl-C or until every stream ends.

``--calibration CAL.yaml`` applies a calibration file of ``imuflow calibrate`` without
editing the config: every filter node's ``calibration`` and every observer's
``joint_centres`` are set to it (as ``imuflow track --calibration`` does).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.runtime.errors import ImuflowError
from pipeline.runtime.graph import GraphSpec, load_graph
from pipeline.runtime.log_setup import TERMINAL_STATUS_ENV
from pipeline.runtime.registry import resolve
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
    p.add_argument("--calibration", type=Path,
                   help="calibration file (imuflow calibrate) for every filter node and every "
                        "observer's joint centres, in place of the config's")


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
    """Load, start and supervise the graph (with ``--calibration`` applied)."""
    if args.quiet:  # the worker processes read the level from the environment
        os.environ["IMUFLOW_LOG_LEVEL"] = "WARNING"
        logging.getLogger().setLevel(logging.WARNING)
    else:  # one status line on the terminal: a headless viewer keeps its own to the debug log
        os.environ[TERMINAL_STATUS_ENV] = "1"
    config = Path(args.config)
    derived = calibrated_config(config, args.calibration) if args.calibration else None
    try:
        return _run(load_graph(derived or config), args)
    finally:
        if derived is not None:
            derived.unlink(missing_ok=True)


def _run(graph: GraphSpec, args: argparse.Namespace) -> int:
    """Start and supervise ``graph`` until it ends, Ctrl-C or ``--duration``."""
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



def calibrated_config(config: Path, calibration: Path) -> Path:
    """``config`` with ``calibration`` as every filter's calibration and every observer's
    joint centres, written beside it (``derived_graph``; the caller removes it); ImuflowError
    when the file is missing or the graph has no filter to apply it."""
    from pipeline.calibration.calibration_file import CALIBRATION_PARAMS  # only when asked
    from pipeline.runtime.derived_graph import config_document, write_derived_graph

    if not calibration.is_file():
        raise ImuflowError(f"--calibration {calibration}: no such file; make one with `imuflow "
                           "calibrate`")
    load_graph(config)  # the config's own errors first, named as they are
    doc = config_document(config)
    kinds = [(resolve(kind), key) for kind, key in CALIBRATION_PARAMS]
    filters = 0
    for node in doc["nodes"]:
        for cls, key in kinds:
            if issubclass(resolve(node["kind"]), cls):
                node.setdefault("params", {})[key] = str(calibration.resolve())
                filters += key == "calibration"
    if not filters:
        raise ImuflowError(f"--calibration: {config} has no filter node (nodes.filter.Filter) "
                           "to apply it")
    return write_derived_graph(config, doc, "run")
