"""``imuflow eval MODEL DATA``: per-joint angle errors of an observer model on data with ground truth.

DATA is a dataset npz file (format in pipeline/evaluation/imu_dataset.py; make one with
``python tools/train_observer.py heldout``) or an MCAP session with a ``chain.truth`` stream
(IMU streams resampled onto the truth stamps). The model runs in block mode through onnxruntime
with zero initial state; errors after ``--warmup-s`` are summarised per joint in degrees.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.evaluation.imu_dataset import dataset_from_session, load_dataset
from pipeline.evaluation.joint_errors import format_table
from pipeline.evaluation.observer_eval import REPO, OnnxObserverModel, evaluate, plot_result
from pipeline.kinematics.chain import load_chain
from pipeline.runtime.errors import ImuflowError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("model", type=Path, help="ONNX model (card beside it) or its .json card")
    p.add_argument("data", type=Path, help="dataset .npz with ground truth (pipeline/evaluation/imu_dataset.py)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="skip this many seconds per "
                   "sequence before taking statistics (default 5)")
    p.add_argument("--plot", type=Path, help="write error-over-time and histogram PNG here")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    p.add_argument("--predictions", type=Path, metavar="OUT.npz",
                   help="also write the estimates: q_rel (S, T, bodies, 4) w,x,y,z body to "
                        "parent (root: to earth; NaN where the model gives none), bodies, "
                        "imus, rate_hz, model")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the per-joint table (deg)."""
    try:
        return _evaluate(args)
    except ValueError as exc:  # data without truth, wrong IMUs or rate: one line, no traceback
        raise ImuflowError(f"eval: {exc}") from None


def _evaluate(args: argparse.Namespace) -> int:
    """Load model and data, score, print; write the plot and predictions when asked."""
    model = OnnxObserverModel(args.model)
    if args.data.suffix.lower() == ".mcap":
        chain = load_chain(REPO / model.card.chain)
        data = dataset_from_session(args.data, model.card.imus, model.card.chain, chain.body_names)
        if abs(data.rate_hz - model.card.rate_hz) > 0.01 * model.card.rate_hz:
            raise ValueError(f"{args.data}: truth stream runs at {data.rate_hz:.1f} Hz, model "
                             f"'{model.card.name}' expects {model.card.rate_hz:g} Hz")
        data = replace(data, rate_hz=model.card.rate_hz)
    else:
        data = load_dataset(args.data)
    result = evaluate(model, data, args.warmup_s)
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data),
                          "sequences": data.n_sequences, "warmup_s": args.warmup_s,
                          "per_joint": {b: s.as_dict() for b, s in result.stats.items()}}))
    else:
        title = (f"{model.card.name} on {args.data.name}: {data.n_sequences} sequences x "
                 f"{data.duration_s:.0f} s, after {args.warmup_s:g} s warm-up")
        print(format_table(result.stats, title))
    if args.plot:
        plot_result(result, args.plot, title=f"{model.card.name} on {args.data.name}")
    if args.predictions:
        np.savez(args.predictions, q_rel=result.q_rel.astype(np.float32),
                 bodies=np.array(data.bodies), imus=np.array(model.card.imus),
                 rate_hz=data.rate_hz, model=str(args.model), data=str(args.data))
        print(f"wrote {args.predictions}")
    return 0
