"""Soak: hours of simulated IMU data through the processing graph, checking gaps and memory growth.

Run: ``python tools/soak.py [--duration-s 3600] [--imus 10] [--speed 10] [--block 10] [--json]``.

The graph of tools/e2e_graph.py (sim -> sync -> filter -> observer -> fk -> probe,
orientation -> fk root; no viewer), every node in its own process, runs
``duration_s`` simulated seconds at ``speed`` times real time. Reported: samples at
the end of the graph and missing ones (from the pose time stamps), gaps counted by
every node, RSS of every process after the warm-up and at the end (goal: growth
< 10 MB), wall time and the multiple of real time achieved. The simulator starts
new motion every 600 s (drivers/sim.py CHUNK_S) and flags that as a gap on each
sensor stream: those gaps are expected and listed apart. Sync waits up to 3 blocks
(at least 0.1 s) for a late sensor: a message carries ``block`` samples, so a shorter
wait would mark sensors missing whenever the busy host delays one message.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.e2e_graph import CHAINS, graph_yaml, group_pids, machine, rss_mb
from tools.random_observer import export_random_observer

RSS_GOAL_MB = 10.0
SIM_CHUNK_S = 600.0  # drivers/sim.py CHUNK_S


def run_soak(duration_s: float, *, n_imu: int = 10, speed: float = 10.0, block: int = 10,
             warmup_s: float = 10.0, work: Path | None = None) -> dict:
    """Run the soak and return its JSON-able summary (see the module docstring)."""
    from pipeline.runtime.graph import load_graph
    from pipeline.runtime.supervisor import Supervisor

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="imfsoak")) if own else work
    os.environ.setdefault("IMUFLOW_RUNS", str(work / "runs"))
    try:
        chain_file = REPO / CHAINS[n_imu]
        model = export_random_observer(chain_file, work / "models")
        report = work / "probe.json"
        path = work / "soak.yaml"
        path.write_text(graph_yaml(chain_file, work / "models", model.name, report,
                                   layout="processes", duration_s=duration_s, speed=speed,
                                   block=block, skip_s=0.0, latencies=False,
                                   sync_latency_s=max(0.1, 3 * block / 100.0)))
        status: dict[str, dict] = {}
        sup = Supervisor(load_graph(path), on_status=lambda s: status.update(s["nodes"]))
        sup.start()
        t0 = time.monotonic()
        rss_start: dict[str, float] = {}
        rss_last: dict[str, float] = {}
        next_sample = [t0]

        def until() -> bool:
            now = time.monotonic()
            if now >= next_sample[0]:
                next_sample[0] = now + 0.5
                for group, pid in group_pids(sup).items():
                    try:
                        rss = rss_mb(pid)
                    except (FileNotFoundError, ProcessLookupError):
                        continue  # exited meanwhile
                    if rss <= 0:
                        continue  # exiting (zombie): no memory figure
                    rss_last[group] = rss
                    if now - t0 >= warmup_s and group not in rss_start:
                        rss_start[group] = rss
            return False  # the graph ends with the simulated stream

        code = sup.run(until=until)
        wall = time.monotonic() - t0
        probe = json.loads(report.read_text())
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    expected_chunk_gaps = n_imu * max(0, math.ceil(duration_s / SIM_CHUNK_S) - 1)
    nodes = {}
    for nid, st in sorted(status.items()):
        nodes[nid] = {k: st[k] for k in ("gaps", "missed", "drops", "bad_messages", "errors",
                                           "restarts", "samples_in", "samples_out", "missing",
                                           "interpolated", "invalid", "held_frames", "resets")
                      if k in st}
    growth = {g: round(rss_last[g] - rss_start[g], 2) for g in rss_start if g in rss_last}
    gaps_unexpected = sum(n["gaps"] or 0 for n in nodes.values()) - expected_chunk_gaps
    return {
        "exit": code, "duration_s": duration_s, "imus": n_imu, "speed": speed, "block": block,
        "samples_expected": round(duration_s * 100), "samples": probe["samples"],
        "missing_samples": probe["missing_samples"], "gaps_flagged_at_sink": probe["gaps_flagged"],
        "gaps_per_node": {nid: n["gaps"] for nid, n in nodes.items()},
        "gaps_expected_sim_chunks": expected_chunk_gaps, "gaps_unexpected": gaps_unexpected,
        "nodes": nodes,
        "rss_mb": {g: {"start": round(rss_start.get(g, float("nan")), 2),
                       "end": round(rss_last.get(g, float("nan")), 2), "growth": growth.get(g)}
                   for g in sorted(rss_last)},
        "rss_growth_max_mb": max(growth.values()) if growth else None,
        "rss_goal_mb": RSS_GOAL_MB, "rss_warmup_s": warmup_s,
        "wall_s": round(wall, 1), "real_time_multiple": round(duration_s / wall, 2),
    }


def main() -> None:
    """Parse arguments, run, print JSON (--json) or a short table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=3600.0, help="simulated seconds")
    ap.add_argument("--imus", type=int, default=10, choices=sorted(CHAINS))
    ap.add_argument("--speed", type=float, default=10.0, help="multiple of real time (0 = max)")
    ap.add_argument("--block", type=int, default=10, help="samples per sensor message")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = ap.parse_args()
    summary = {"tool": "soak", "command": "python tools/soak.py " + " ".join(sys.argv[1:]),
               "machine": machine(),
               **run_soak(args.duration_s, n_imu=args.imus, speed=args.speed, block=args.block)}
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.write_text(text)
    if args.json:
        print(text)
        return
    print(f"samples {summary['samples']}/{summary['samples_expected']}, missing "
          f"{summary['missing_samples']}, unexpected gaps {summary['gaps_unexpected']}, "
          f"wall {summary['wall_s']} s ({summary['real_time_multiple']}x real time)")
    for g, r in summary["rss_mb"].items():
        print(f"  {g:12s} RSS {r['start']:8.1f} -> {r['end']:8.1f} MB  growth {r['growth']}")


if __name__ == "__main__":
    main()
