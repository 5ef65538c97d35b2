"""Score observers minute by minute on sequences ten times longer than any held-out set: does
an RNN's error grow with the time its state has run, where the constraint observer's does not?

Usage (from the repository root)::

    python tools/long_sequences.py models/arm3-sparse.onnx --problem arm3-vib-band
    python tools/long_sequences.py models/arm3-sparse.onnx --problem arm3-wide --stress --json

Training sees 5 s windows cut from 60 s sequences and every held-out set is 60 s long; live
use and real recordings run for many minutes from one initial state. This generates
``--sequences`` x ``--duration-s`` sequences (default 8 x 600 s) from seeds 6,000,000 on
(disjoint from every training, validation, held-out, stress and stress-axis seed) with the
problem's held-out settings (``--stress``: its stress settings), runs every model given and
the constraint observer (no training) over each sequence from a zero state, and prints per
joint the mean and p99 absolute error (deg; the root: inclination) of each minute. The first
minute leaves out the first ``--warmup-s`` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import EvalResult, OnnxObserverModel, evaluate
from tools.training.data import generate
from tools.training.problem import get_problem

SEED0 = 6_000_000
BIN_S = 60.0


def per_minute(result: EvalResult, rate_hz: float, warmup_s: float) -> dict[str, dict]:
    """Per output body: mean and p99 of the absolute error (deg) over all sequences, per minute."""
    n = result.t_s.shape[0]
    edges = [round(k * BIN_S * rate_hz) for k in range(int(np.ceil(n / (BIN_S * rate_hz))) + 1)]
    edges[0], edges[-1] = round(warmup_s * rate_hz), n
    out = {}
    for body, err in result.errors.items():
        bins = [np.abs(err[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
        out[body] = {"mean_deg": [round(float(np.nanmean(e)), 2) for e in bins],
                     "p99_deg": [round(float(np.nanpercentile(e, 99)), 1) for e in bins]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="*", help="ONNX models (card beside each)")
    p.add_argument("--problem", required=True, help="tools/training/problem.py name")
    p.add_argument("--stress", action="store_true",
                   help="the problem's stress settings and sensor errors")
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.duration_s < BIN_S:
        p.error(f"--duration-s must be at least {BIN_S:g} s (one minute), got {args.duration_s:g}")
    problem = get_problem(args.problem)
    data = generate(problem, np.arange(SEED0, SEED0 + args.sequences), args.duration_s,
                    stress=args.stress, progress=not args.json)
    rows = {"constraint_observer": per_minute(
        evaluate_node("constraint_observer", data, args.warmup_s, progress=not args.json),
        data.rate_hz, args.warmup_s)}
    for path in args.models:
        rows[str(path)] = per_minute(evaluate(OnnxObserverModel(path), data, args.warmup_s),
                                     data.rate_hz, args.warmup_s)
    if args.json:
        print(json.dumps({"problem": problem.name, "stress": args.stress, "seed0": SEED0,
                          "sequences": args.sequences, "duration_s": args.duration_s,
                          "warmup_s": args.warmup_s, "observers": rows}))
        return 0
    print(f"{problem.name}{' (stress)' if args.stress else ''}: {args.sequences} x "
          f"{args.duration_s:g} s from seed {SEED0}; per minute, mean / p99 of |error| deg")
    for name, bodies in rows.items():
        for body, st in bodies.items():
            cells = " ".join(f"{m:5.2f}/{q:<5.1f}" for m, q in zip(st["mean_deg"], st["p99_deg"]))
            print(f"{Path(name).stem:<20} {body:<6} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
