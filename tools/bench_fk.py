"""Benchmark forward kinematics and the IMU simulator.

Usage: python tools/bench_fk.py [--json] [--calls N]

FK: median and p99 of single-frame ``fk_q_into`` calls from Python (preallocated outputs,
after warm-up) for the 3-, 7- and 24-body chains; each call is timed on its own with
``perf_counter_ns`` and the median cost of an empty timer pair is subtracted. Also the mesh
vertex transform of the 24-body chain. Simulator: simulated seconds per wall second of
``simulate`` (100 Hz, default noise) per chain.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import Kinematics, fk_q_into
from pipeline.kinematics.imu_synth import simulate
from pipeline.kinematics.mesh import build_mesh, vertices_to_world_into
from pipeline.kinematics.motion import generate_motion
from tools import machine_info  # noqa: E402

CHAINS = {"arm3": 3, "lower_body": 7, "chain24": 24}


def timer_overhead_ns(n: int) -> float:
    """Median cost of two back-to-back perf_counter_ns calls."""
    pc = time.perf_counter_ns
    d = np.empty(n)
    for i in range(n):
        t0 = pc()
        d[i] = pc() - t0
    return float(np.median(d))


def time_calls(fn, args: tuple, n: int, overhead: float) -> dict:
    """Median and p99 (us) of n individually timed calls of fn(*args)."""
    pc = time.perf_counter_ns
    for _ in range(1000):
        fn(*args)
    d = np.empty(n)
    for i in range(n):
        t0 = pc()
        fn(*args)
        d[i] = pc() - t0
    d = np.maximum(d - overhead, 0.0) / 1000.0
    return {"median_us": round(float(np.median(d)), 3), "p99_us": round(float(np.percentile(d, 99)), 3),
            "calls": n}


def bench(calls: int) -> dict:
    """Run all benchmarks; returns a JSON-serialisable dict."""
    overhead = timer_overhead_ns(calls)
    fk, sim = {}, {}
    for name, n in CHAINS.items():
        chain = load_chain(ROOT / "configs" / "chains" / f"{name}.yaml")
        assert chain.n_bodies == n
        kin = Kinematics(chain)
        q = np.ascontiguousarray(generate_motion(chain, 2.0, 0).q(np.array([1.0]))[0])
        pos, quat = np.empty((n, 3)), np.empty((n, 4))
        fk[f"{n}_bodies"] = {"chain": name, **time_calls(
            fk_q_into, (kin.ints, kin.params, q, pos, quat), calls, overhead)}
        if n == 24:
            mesh = build_mesh(chain)
            out = np.empty_like(mesh.vertices)
            fk["mesh_24_bodies"] = {"vertices": len(mesh.vertices), **time_calls(
                vertices_to_world_into, (mesh.vertices, mesh.body_start, pos, quat, out),
                calls // 4, overhead)}
        simulate(chain, 1.0, 100.0, seed=0)  # warm-up (compile)
        duration = 120.0
        t0 = time.perf_counter()
        simulate(chain, duration, 100.0, seed=1)
        wall = time.perf_counter() - t0
        sim[name] = {"sim_s_per_wall_s": round(duration / wall, 1), "rate_hz": 100.0,
                     "n_imu": len(chain.imus)}
    return {
        "machine": {"platform": platform.platform(), "cpu": machine_info.cpu_model(),
                    "python": platform.python_version(), "numba": numba.__version__,
                    "numpy": np.__version__},
        "timer_overhead_ns": overhead,
        "fk_single_frame": fk,
        "simulator_throughput": sim,
    }


def main() -> None:
    """Parse arguments, run, print JSON or a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--calls", type=int, default=50000, help="timed calls per FK case")
    args = ap.parse_args()
    res = bench(args.calls)
    if args.json:
        print(json.dumps(res))
        return
    m = res["machine"]
    print(f"{m['cpu']} | {m['platform']} | python {m['python']} numba {m['numba']}")
    print(f"{'FK single frame':<24}{'median us':>12}{'p99 us':>12}")
    for k, v in res["fk_single_frame"].items():
        print(f"{k:<24}{v['median_us']:>12.3f}{v['p99_us']:>12.3f}")
    print(f"{'simulator (100 Hz)':<24}{'sim s / wall s':>24}")
    for k, v in res["simulator_throughput"].items():
        print(f"{k:<24}{v['sim_s_per_wall_s']:>24.1f}")


if __name__ == "__main__":
    main()
