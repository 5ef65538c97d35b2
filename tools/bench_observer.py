"""Observer benchmark: ONNX step latency at batch 1, block throughput, and a plain PyTorch step.

Run with ``imuflow bench observer [--json] [--steps N]``. Models: every shipped
``models/*.onnx`` with a card, plus GRU observers exported here with the model-card IO
(tiny test sizes and the shipped size, hidden 128 x 2 layers). Budget (DESIGN.md):
observer step, default model, batch 1: median <= 100 us.

Each one-frame engine is timed in a hot loop and "at 100 Hz" (a 10 ms sleep before each
step, CPU time of the step alone), which is how the graph runs it; then at 100 Hz again
with the CPUs kept awake (a PM QoS request of 0 us, as a ``realtime_groups:`` group holds
it; ``pipeline/runtime/realtime.py``), where the kernel permits it. ``wake_penalty`` times
a fixed 10-us numpy workload the same three ways: what the machine's idle states cost any
code. The engines: the onnxruntime step and, where the model is the project's GRU observer,
the compiled kernel of ``nodes/observer/gru_step.py`` that the node uses for one-frame steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodes.observer.fit import fit_model
from nodes.observer.runner import ObserverRunner
from nodes.observer.session import StepBinding, load_session
from pipeline.estimation.output_encoding import output_width
from pipeline.evaluation.model_card import (
    SCHEMA,
    ModelCard,
    OutputBody,
    StateTensor,
    sha256_of,
    write_card,
)
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import simulate
from pipeline.runtime.realtime import CPU_LATENCY_DEVICE, CpuWakeLatency
from pipeline.runtime.streams import frame_dtype
from tools import machine_info  # noqa: E402
from tools.training_extra import torch_missing

BUDGET_US = 100.0
EXPORTED = [  # (name, chain, hidden, layers, outputs)
    ("tiny-knee-h16x2", "knee", 16, 2, (("thigh", "quat"), ("shank", "sincos"))),
    ("tiny-knee-h8x1", "knee", 8, 1, (("thigh", "quat"), ("shank", "sincos"))),
    ("arm3-h128x2", "arm3", 128, 2, (("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos"))),
    ("knee-h128x2", "knee", 128, 2, (("thigh", "quat"), ("shank", "sincos"))),
]


def machine() -> dict:
    """Platform, CPU model, Python and key library versions."""
    return machine_info.machine("numpy", "onnxruntime", "torch")



def _torch_net(n_in: int, hidden: int, layers: int, n_out: int):
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(n_in, hidden, layers, batch_first=True)
            self.head = torch.nn.Linear(hidden, n_out)

        def forward(self, imu, h0):
            z, hn = self.gru(imu, h0)
            return self.head(z), hn

    torch.manual_seed(0)
    return Net().eval()


def export(folder: Path, name: str, chain_name: str, hidden: int, layers: int,
           outputs: tuple) -> tuple[Path, object]:
    """Export a random GRU observer with card to ``folder``; return (onnx path, torch net)."""
    import torch
    chain_file = REPO / "configs" / "chains" / f"{chain_name}.yaml"
    ch = load_chain(chain_file)
    n_in = 6 * len(ch.imus)
    n_out = output_width(outputs)
    net = _torch_net(n_in, hidden, layers, n_out)
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, n_in), torch.zeros(layers, 1, hidden)),
                          str(path), input_names=["imu", "h0"], output_names=["y", "hn"],
                          dynamic_axes={"imu": {0: "batch", 1: "T"}, "h0": {1: "batch"},
                                        "y": {0: "batch", 1: "T"}, "hn": {1: "batch"}},
                          dynamo=False, opset_version=17)
    write_card(ModelCard(name=name, onnx_file=path.name, sha256=sha256_of(path),
                         chain=str(chain_file), bodies=ch.body_names, imus=ch.imu_names,
                         rate_hz=100.0, input_name="imu",
                         state=(StateTensor("h0", "hn", (layers, hidden)),), output_name="y",
                         outputs=tuple(OutputBody(b, e) for b, e in outputs)),
               path.with_suffix(".json"))
    return path, net


def _percentiles(samples_ns: list[int]) -> dict:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"p50_us": round(float(np.percentile(us, 50)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2)}


PACED_STEPS = 200  # steps timed with a 10 ms pause before each (as at 100 Hz), at most


def _paced(steps: int) -> int:
    """Paced steps for a run of ``steps``: a third of them, 20 to PACED_STEPS (10 ms each)."""
    return min(PACED_STEPS, max(20, steps // 3))


def _awake(measure, *args) -> dict | None:
    """``measure(*args)`` while the CPUs are kept awake (PM QoS 0 us); None where refused."""
    try:
        request = CpuWakeLatency(0)
    except OSError:
        return None
    with request:
        return measure(*args)


def _numpy_workload() -> None:
    """About 10 us of small numpy operations (the reference of ``bench_wake_penalty``)."""
    a, b = np.zeros((1, 2, 3)), np.ones(4)
    for _ in range(5):
        a[:, 0] = b[:3]
        np.linalg.norm(b)
        np.empty((1, 4))[:] = b


def _times(n: int, run: Callable[[int], object], pause_s: float,
           before: Callable[[int], object] | None = None) -> dict:
    """p50/p99 (us) of ``run(i)`` for i in range(n), ``before(i)`` untimed ahead of each.

    In a hot loop (wall clock), or with ``pause_s`` > 0 after a sleep each, in the thread's
    CPU time: the cost when caches have gone cold between frames, as in a 100 Hz stream.
    """
    clock = time.thread_time_ns if pause_s > 0 else time.perf_counter_ns
    lat = []
    for i in range(n):
        if before is not None:
            before(i)
        if pause_s > 0:
            time.sleep(pause_s)
        t0 = clock()
        run(i)
        lat.append(clock() - t0)
    return _percentiles(lat)


def _workload_times(pause_s: float, steps: int = PACED_STEPS) -> dict:
    """p50/p99 of :func:`_numpy_workload`, after a ``pause_s`` sleep each (then CPU time)."""
    return _times(steps, lambda _: _numpy_workload(), pause_s)


def bench_wake_penalty() -> dict:
    """The machine's cost of waking for a frame: a fixed numpy workload hot, at 100 Hz, and at
    100 Hz with the CPUs kept awake (None where the kernel refuses the request)."""
    _workload_times(0.0)  # warm-up
    return {"workload": "small numpy operations, about 10 us hot",
            "hot": _workload_times(0.0), "paced_100hz": _workload_times(0.01),
            "paced_100hz_awake": _awake(_workload_times, 0.01)}


def _step_times(step, x: np.ndarray, state: list[np.ndarray], pause_s: float) -> dict:
    """p50/p99 of one-frame ``step.run`` (StepBinding or CompiledStep) over the rows of ``x``,
    the state carried from step to step (:func:`_times`)."""
    held = [state]

    def run(_: int) -> None:
        _, held[0] = step.run(held[0])

    return _times(len(x), run, pause_s, before=lambda i: step.x.__setitem__(0, x[i]))


def _node_times(runner: ObserverRunner, frames: np.ndarray, out: np.ndarray,
                pause_s: float) -> dict:
    """p50/p99 of the node's one-frame ``runner.process`` (features, a hybrid's prior, the
    step, decoding) over ``frames`` (:func:`_times`)."""
    return _times(len(frames), lambda i: runner.process(frames[i:i + 1], out), pause_s)


def _engines(session, x: np.ndarray, steps: int) -> dict:
    """Hot and 100 Hz-paced one-frame step times of onnxruntime and, if used, the kernel."""
    out = {}
    engines = {"onnxruntime": StepBinding(session)}
    if session.weights is not None:
        engines["compiled"] = session.step_binding()
    for name, step in engines.items():
        _step_times(step, x[:200], session.zero_state(), 0.0)  # warm-up
        paced = x[:_paced(steps)]
        out[name] = {"hot": _step_times(step, x[:steps], session.zero_state(), 0.0),
                     "paced_100hz": _step_times(step, paced, session.zero_state(), 0.01),
                     "paced_100hz_awake": _awake(_step_times, step, paced,
                                                 session.zero_state(), 0.01)}
    return out


def bench_model(path: Path, steps: int, net: object | None) -> dict:
    """Latency and throughput of one model."""
    session = load_session(path, (path.parent,))
    card = session.card
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, card.n_features)).astype(np.float32)
    state = session.zero_state()
    for i in range(200):
        _, state = session.run(x[i:i + 1], state)
    lat = []
    for i in range(steps):
        t0 = time.perf_counter_ns()
        _, state = session.run(x[i:i + 1], state)
        lat.append(time.perf_counter_ns() - t0)
    row = {"model": card.name, "hidden": [list(s.shape) for s in card.state],
           "features": card.n_features, "outputs": card.n_outputs,
           "onnx_step": _percentiles(lat), "step_engine": session.step_engine,
           "one_frame_steps": _engines(session, x, steps)}
    # one frame through the node's runner: features, a hybrid's prior, the step, decoding; on
    # simulated motion of the card's chain (the prior's estimators work as in use)
    chain = load_chain(REPO / "configs" / "chains" / f"{Path(card.chain).stem}.yaml")
    fit = fit_model(card, chain, list(card.imus), card.rate_hz)
    runner = ObserverRunner(session, fit, reset_gap_s=1.0, block_mode=False)
    rec = simulate(chain, steps / card.rate_hz, card.rate_hz, 0)
    cols = [chain.imu_names.index(n) for n in card.imus]
    frames = np.zeros(steps, dtype=frame_dtype(len(cols)))
    frames["t_host"] = np.arange(steps) * round(1e9 / card.rate_hz)
    frames["acc"], frames["gyr"] = rec.acc[:steps, cols], rec.gyr[:steps, cols]
    out = np.empty(1, dtype=[("q_rel", "<f4", (chain.n_bodies, 4)),
                             ("angle", "<f4", (len(chain.hinge_bodies),))])
    row["node_step"] = _node_times(runner, frames, out, 0.0)
    paced = frames[:_paced(steps)].copy()  # stamps go on after the hot run's: no gap reset
    paced["t_host"] += frames["t_host"][-1] + round(1e9 / card.rate_hz)
    row["node_step_paced_100hz"] = _node_times(runner, paced, out, 0.01)
    paced["t_host"] += paced["t_host"][-1] - paced["t_host"][0] + round(1e9 / card.rate_hz)
    row["node_step_paced_100hz_awake"] = _awake(_node_times, runner, paced, out, 0.01)
    t_block = 1000
    xb = np.tile(x, (t_block // len(x) + 1, 1))[:t_block]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        session.run(xb, session.zero_state())
        best = min(best, time.perf_counter() - t0)
    row["block_samples_per_s"] = round(t_block / best)
    if net is not None:
        import torch
        torch.set_num_threads(1)
        h = torch.zeros(card.state[0].shape[0], 1, card.state[0].shape[1])
        xt = torch.from_numpy(x)
        lat = []
        with torch.inference_mode():
            for i in range(200):
                _, h = net(xt[i:i + 1][None], h)
            for i in range(steps):
                t0 = time.perf_counter_ns()
                _, h = net(xt[i:i + 1][None], h)
                lat.append(time.perf_counter_ns() - t0)
        row["torch_step"] = _percentiles(lat)
    row["within_budget"] = row["onnx_step"]["p50_us"] <= BUDGET_US
    return row


def bench_constraint_observer(steps: int, chain: str = "knee") -> dict:
    """``nodes.constraint_observer`` on the knee (hinge kernel), arm3 (two-axis: VQF per IMU,
    heading estimation, split) or lower_body (7 IMUs: hips spherical, VQF per IMU; knees and
    ankles hinges) chain: one-frame ``on_block``, hot and at 100 Hz.

    Includes building and emitting ``chain.state`` (to a collecting emitter, no bus). The arm3
    and lower_body frames come from the simulator, so the heading estimation runs as in use
    (every 0.2 s in the first 8 s, then every second).
    """
    from nodes.constraint_observer import ConstraintObserver
    from pipeline.kinematics.chain import load_chain
    from pipeline.kinematics.imu_synth import simulate
    from pipeline.runtime.node import GraphContext
    from pipeline.runtime.streams import frame_info
    from pipeline.runtime.testing import make_block

    chain_file = REPO / f"configs/chains/{chain}.yaml"
    node = ConstraintObserver.create("observer", context=GraphContext(chain_file=chain_file))
    imus = list(load_chain(chain_file).imu_names)
    info = frame_info("filter/imu.frame", imus, 100.0)
    frames = np.zeros(steps, frame_dtype(len(imus)))
    if chain == "knee":
        rng = np.random.default_rng(0)
        frames["acc"] = rng.normal(0.0, 0.3, (steps, 2, 3)) + [0.0, 0.0, 9.81]
        frames["gyr"] = rng.normal(0.0, 0.5, (steps, 2, 3))
    else:
        rec = simulate(load_chain(chain_file), steps / 100.0, 100.0, 0)
        frames["acc"], frames["gyr"] = rec.acc, rec.gyr
    blocks = [make_block(info, frames[i:i + 1]) for i in range(steps)]

    def times(todo: list, pause: float) -> dict:
        return _times(len(todo), lambda i: node.on_block("frame", todo[i]), pause,
                      before=lambda _: node.emitted.clear())

    n = _paced(steps)
    out = {"hot": times(blocks, 0.0), "paced_100hz": times(blocks[:n], 0.01),
           "paced_100hz_awake": _awake(times, blocks[:n], 0.01)}
    return {"model": f"constraint observer ({chain}, no model file)", "one_frame_on_block": out,
            "within_budget": out["paced_100hz"]["p50_us"] <= BUDGET_US}


def _p50_p99(times: dict | None) -> str:
    """'p50/p99' in us, or 'n/a'."""
    return "n/a" if times is None else f"{times['p50_us']:.1f}/{times['p99_us']:.1f}"


def _is_observer(onnx: Path) -> bool:
    """True when ``onnx`` has an observer model card (not, e.g., a dynamics model's)."""
    card = onnx.with_suffix(".json")
    return card.exists() and json.loads(card.read_text()).get("schema") == SCHEMA


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table or one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--steps", type=int, default=3000, help="timed steps per model")
    args = ap.parse_args(argv)
    rows = []
    shipped = sorted(p for p in (REPO / "models").glob("*.onnx") if _is_observer(p))
    for p in shipped:
        rows.append(dict(bench_model(p, args.steps, None), source="shipped"))
    no_torch = torch_missing()
    if no_torch:  # runtime set-up only: the exported models need torch
        rows += [{"model": name, "source": "exported here",
                  "skipped": f"needs PyTorch to export the model and time its torch step: "
                             f"{no_torch}"} for name, *_ in EXPORTED]
    else:
        with tempfile.TemporaryDirectory(prefix="imf-bench") as tmp:
            for name, chain, hidden, layers, outputs in EXPORTED:
                path, net = export(Path(tmp), name, chain, hidden, layers, outputs)
                rows.append(dict(bench_model(path, args.steps, net), source="exported here"))
    result = {"bench": "observer", "command": " ".join(["imuflow bench observer"] + (argv or sys.argv[1:])),
              "machine": machine(), "budget_step_p50_us": BUDGET_US, "steps": args.steps,
              "session": "onnxruntime CPU, 1 intra-op thread, sequential; batch 1",
              "cpu_wake_latency": {"device": str(CPU_LATENCY_DEVICE),
                                   "note": "paced_100hz_awake: at 100 Hz while a PM QoS request "
                                           "of 0 us keeps the CPUs out of deep idle states "
                                           "(null: not permitted here)"},
              "wake_penalty": bench_wake_penalty(),
              "models": rows, "constraint_observer": bench_constraint_observer(args.steps),
              "constraint_observer_arm3": bench_constraint_observer(args.steps, "arm3"),
              "constraint_observer_lower_body": bench_constraint_observer(args.steps,
                                                                          "lower_body")}
    if args.json:
        print(json.dumps(result))
        return 0
    m = result["machine"]
    print(f"observer bench on {m['cpu']} ({m['platform']}), python {m['python']}, "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}")
    print(f"{'model':<18} {'state':<10} {'onnx p50/p99 us':>16} {'node p50/p99 us':>16} "
          f"{'torch p50/p99 us':>17} {'block samples/s':>16}  budget")
    for r in rows:
        if "skipped" in r:
            print(f"{r['model']:<18} skipped: {r['skipped']}")
            continue
        t = r.get("torch_step")
        tt = f"{t['p50_us']:.1f}/{t['p99_us']:.1f}" if t else "n/a"
        o, n = r["onnx_step"], r["node_step"]
        print(f"{r['model']:<18} {r['hidden']!s:<10} {o['p50_us']:>7.1f}/{o['p99_us']:<8.1f} "
              f"{n['p50_us']:>7.1f}/{n['p99_us']:<8.1f} {tt:>17} {r['block_samples_per_s']:>16}  "
              f"{'ok' if r['within_budget'] else 'OVER'}")
    print("\none-frame steps, p50/p99 us: hot loop | at 100 Hz (10 ms sleep before each, CPU "
          "time) | at 100 Hz with the CPUs kept awake (PM QoS 0 us; n/a: not permitted)")
    lines = [("machine", "numpy 10 us", result["wake_penalty"])]
    for r in rows:
        if "node_step" in r:
            lines.append((r["model"], "node step", {
                "hot": r["node_step"], "paced_100hz": r["node_step_paced_100hz"],
                "paced_100hz_awake": r["node_step_paced_100hz_awake"]}))
        lines += [(r["model"], name, e) for name, e in r.get("one_frame_steps", {}).items()]
    lines += [(label, "on_block", result[key]["one_frame_on_block"])
              for key, label in (("constraint_observer", "constraint (knee)"),
                                 ("constraint_observer_arm3", "constraint (arm3)"),
                                 ("constraint_observer_lower_body", "constraint (legs)"))]
    for model, what, e in lines:
        print(f"{model:<18} {what:<12} " + " | ".join(
            f"{_p50_p99(e[k]):>16}" for k in ("hot", "paced_100hz", "paced_100hz_awake")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
