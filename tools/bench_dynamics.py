"""Benchmark inverse dynamics: Newton-Euler per frame, the dynamics node's step, the learned model.

Usage: python tools/bench_dynamics.py [--json] [--calls N]

Newton-Euler: median and p99 of single-frame ``rnea_into`` calls from Python (preallocated
outputs, after warm-up; the median cost of an empty timer pair subtracted) for the 5-body arm,
the 7-body lower body (floating base) and the 24-body chain24, on random states.
Node step: ``Dynamics.on_block`` with one chain.state sample per message (as live at 100 Hz:
q from the state, the differentiating window, Newton-Euler, the output record), arm5 and
lower_body, rigid-body only and (when ``models/arm5-dynamics.onnx`` exists) with the learned
model on top. Learned model alone: ``LearnedDynamics.step`` at batch 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodes.dynamics import Dynamics  # noqa: E402
from nodes.dynamics.learned import LearnedDynamics, load_dynamics_card  # noqa: E402
from pipeline.dynamics import InverseDynamics  # noqa: E402
from pipeline.dynamics.newton_euler import rnea_into  # noqa: E402
from pipeline.kinematics.chain import load_chain  # noqa: E402
from pipeline.kinematics.fk import Kinematics  # noqa: E402
from pipeline.kinematics.motion import generate_motion  # noqa: E402
from pipeline.runtime.message import StreamInfo  # noqa: E402
from pipeline.runtime.node import GraphContext  # noqa: E402
from pipeline.runtime.streams import STATE, state_dtype  # noqa: E402
from pipeline.runtime.testing import make_block  # noqa: E402
from tools import machine_info  # noqa: E402

CHAINS = {"arm5": 5, "lower_body": 7, "chain24": 24}
MODEL = ROOT / "models" / "arm5-dynamics.onnx"


def timer_overhead_ns(n: int) -> float:
    """Median cost of two back-to-back perf_counter_ns calls."""
    pc = time.perf_counter_ns
    d = np.empty(n)
    for i in range(n):
        t0 = pc()
        d[i] = pc() - t0
    return float(np.median(d))


def _stats(d: np.ndarray, overhead: float) -> dict:
    d = np.maximum(d - overhead, 0.0) / 1000.0
    return {"median_us": round(float(np.median(d)), 3),
            "p99_us": round(float(np.percentile(d, 99)), 3), "calls": len(d)}


def time_calls(fn, args_list: list[tuple], n: int, overhead: float) -> dict:
    """Median and p99 (us) of n individually timed calls, cycling through ``args_list``."""
    pc = time.perf_counter_ns
    for k in range(1000):
        fn(*args_list[k % len(args_list)])
    d = np.empty(n)
    for i in range(n):
        a = args_list[i % len(args_list)]
        t0 = pc()
        fn(*a)
        d[i] = pc() - t0
    return _stats(d, overhead)


def bench_rnea(calls: int, overhead: float) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    for name, n in CHAINS.items():
        chain = load_chain(ROOT / "configs" / "chains" / f"{name}.yaml")
        assert chain.n_bodies == n
        dyn = InverseDynamics(chain)
        qs = generate_motion(chain, 20.0, 0).q(np.linspace(0, 19, 64))
        args = []
        for q in qs:
            qd, qdd = rng.normal(0, 2, chain.nqd), rng.normal(0, 20, chain.nqd)
            args.append((dyn.ints, dyn.params, dyn.inert, dyn.gravity,
                         np.ascontiguousarray(q), qd, qdd, dyn.ext_body, np.zeros((0, 9)),
                         np.empty(chain.nqd), np.empty(6), dyn.work))
        out[f"{n}_bodies"] = {"chain": name, "floating": dyn.floating,
                              **time_calls(rnea_into, args, calls, overhead)}
    return out


def _states(chain, seconds: float) -> np.ndarray:
    kin = Kinematics(chain)
    t = np.arange(int(seconds * 100)) / 100.0
    _, q_rel = kin.relative_batch(generate_motion(chain, seconds + 1, 1).q(t))
    st = np.empty(len(t), state_dtype(chain.n_bodies, len(chain.hinge_bodies)))
    st["t_host"] = (t * 1e9).astype(np.int64) + 10**9
    st["q_rel"] = q_rel
    st["angle"] = kin.hinge_angles(q_rel)
    return st


def bench_node(frames: int, overhead: float) -> dict:
    out = {}
    cases = [("arm5", None), ("lower_body", None)]
    if MODEL.exists():
        cases.append(("arm5", MODEL))
    for name, model in cases:
        chain = load_chain(ROOT / "configs" / "chains" / f"{name}.yaml")
        ctx = GraphContext(model_dirs=(ROOT / "models",))
        kw = {"model": str(model)} if model else {}
        node = Dynamics.create("dynamics", context=ctx, chain=str(ROOT / "configs" / "chains" /
                                                                  f"{name}.yaml"), **kw)
        st = _states(chain, frames / 100.0 + 1)
        info = StreamInfo.for_array("sim/chain.state", STATE, st.dtype, rate_hz=100.0)
        blocks = [make_block(info, st[k:k + 1]) for k in range(len(st))]
        for b in blocks[:100]:
            node.on_block("state", b)
        pc = time.perf_counter_ns
        d = np.empty(len(blocks) - 100)
        for i, b in enumerate(blocks[100:]):
            t0 = pc()
            node.on_block("state", b)
            d[i] = pc() - t0
            node.emitted.clear()
        key = f"{name}{'+learned' if model else ''}"
        out[key] = {"bodies": chain.n_bodies, **_stats(d, overhead)}
    return out


def bench_learned(calls: int, overhead: float) -> dict | None:
    if not MODEL.exists():
        return None
    m = LearnedDynamics(load_dynamics_card(MODEL, (ROOT / "models",)))
    d = m.d
    rng = np.random.default_rng(2)
    args = [(rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)) for _ in range(16)]
    return {"model": m.card.name, **time_calls(m.step, args, calls, overhead)}


def main() -> None:
    """Parse arguments, run, print JSON or a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--calls", type=int, default=50000, help="timed calls per kernel case")
    args = ap.parse_args()
    import numba
    import onnxruntime

    overhead = timer_overhead_ns(args.calls)
    res = {"machine": machine_info.machine("numpy", "numba", "onnxruntime"),
           "command": "imuflow bench dynamics --json",
           "timer_overhead_ns": overhead,
           "newton_euler_single_frame": bench_rnea(args.calls, overhead),
           "node_step_one_frame": bench_node(min(args.calls, 6000), overhead),
           "learned_model_step": bench_learned(min(args.calls, 20000), overhead),
           "versions": {"numba": numba.__version__, "onnxruntime": onnxruntime.__version__}}
    if args.json:
        print(json.dumps(res))
        return
    m = res["machine"]
    print(f"{m['cpu']} | {m['platform']} | python {m['python']}")
    print(f"{'case':<34}{'median us':>12}{'p99 us':>12}")
    for k, v in res["newton_euler_single_frame"].items():
        print(f"{'Newton-Euler ' + k:<34}{v['median_us']:>12.3f}{v['p99_us']:>12.3f}")
    for k, v in res["node_step_one_frame"].items():
        print(f"{'node step ' + k:<34}{v['median_us']:>12.3f}{v['p99_us']:>12.3f}")
    lm = res["learned_model_step"]
    if lm:
        print(f"{'learned model step':<34}{lm['median_us']:>12.3f}{lm['p99_us']:>12.3f}")


if __name__ == "__main__":
    main()
