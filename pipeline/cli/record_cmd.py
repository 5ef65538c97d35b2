"""``imuflow record CONFIG -o FILE``: run a graph, recording its sources' outputs to MCAP.

A recorder node (nodes.recorder.Recorder, its own process, restart: never) is
added that subscribes to every output topic of every source node (drivers,
replay, sim) and to any output matching ``--topics`` (fnmatch on node/topic).
Ctrl-C stops the graph and finishes the file cleanly. ``{time}`` in FILE
becomes the UTC start time.
"""

from __future__ import annotations

import argparse
import logging
import time

from pipeline.recording.record_graph import RECORDER_KIND, write_recording_graph
from pipeline.runtime.graph import load_graph
from pipeline.runtime.supervisor import Supervisor

log = logging.getLogger("imuflow.cli.record")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("config", help="graph YAML to run")
    p.add_argument("-o", "--output", required=True, help="session file (.mcap); {time} allowed")
    p.add_argument("--topics", nargs="*", default=[], metavar="PATTERN",
                   help="also record these outputs (node/topic patterns, e.g. 'sync/*')")
    p.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"])
    p.add_argument("--flush-s", type=float, default=1.0, help="flush period, seconds")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (default: Ctrl-C or end of streams)")


def run(args: argparse.Namespace) -> int:
    """Write the augmented graph, run it, remove the generated file."""
    path = write_recording_graph(args.config, args.output, args.topics,
                                 compression=args.compression, flush_s=args.flush_s)
    try:
        graph = load_graph(path)
        rec = [n for n in graph.nodes if n.kind == RECORDER_KIND and n.group == n.id][-1]
        sup = Supervisor(graph)
        sup.start()
        log.info("recording %s to %s", ", ".join(e.source for e in rec.inputs["in"]),
                 rec.params["path"])
        end = time.monotonic() + args.duration if args.duration > 0 else None

        def until() -> bool:
            return rec.id in sup.dead_nodes() or (end is not None and time.monotonic() >= end)

        code = sup.run(until=until)
        if rec.id in sup.dead_nodes():
            log.error("the recorder stopped early (see the error above); %s holds what was "
                      "recorded until then", rec.params["path"])
            return 1
        return code
    finally:
        path.unlink(missing_ok=True)
