"""``imuflow eval MODEL DATA``: per-joint angle errors of an observer model on data with ground truth.

MODEL is an ONNX model (its card beside it) or the kind of an observer node that needs no
model file, e.g. ``constraint_observer`` (run standalone on each sequence of a dataset npz
with the dataset's chain; hinge angles and spherical joints scored, the root left to the
orientation node).
DATA is a dataset npz file (format in pipeline/evaluation/imu_dataset.py; make one with
``python tools/train_observer.py heldout``) or an MCAP session with a ``chain.truth`` stream
(IMU streams resampled onto the truth stamps); data at another rate than the model's is
resampled to it first. The model runs in block mode through onnxruntime
with zero initial state; errors after ``--warmup-s`` are summarised per joint in degrees.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from pipeline.evaluation.imu_dataset import ImuDataset, dataset_from_session, load_dataset
from pipeline.evaluation.joint_errors import format_table
from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import (
    REPO,
    EvalResult,
    OnnxObserverModel,
    evaluate,
    plot_result,
)
from pipeline.evaluation.remount import RemountReport, remount_and_calibrate
from pipeline.kinematics.chain import load_chain
from pipeline.runtime.errors import ImuflowError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("model", type=Path, help="ONNX model (card beside it), its .json card, or "
                   "an observer node kind without a model file (constraint_observer)")
    p.add_argument("data", type=Path, help="dataset .npz with ground truth (pipeline/evaluation/imu_dataset.py)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="skip this many seconds per "
                   "sequence before taking statistics (default 5)")
    p.add_argument("--plot", type=Path, help="write error-over-time and histogram PNG here")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a param of the node kind scored (repeatable; VALUE read as YAML), "
                        "e.g. --param ball_tau_s=0")
    p.add_argument("--remount", type=int, metavar="SEED",
                   help="first strap each sequence's IMUs on at random rotations (all of "
                        "SO(3), seeded) and calibrate them with a simulated procedure, as "
                        "a user with real sensors would (pipeline/evaluation/remount.py)")
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
    if args.model.suffix.lower() not in (".onnx", ".json") and not args.model.exists():
        return _evaluate_node(args)
    if args.param:
        raise ValueError("--param sets a node kind's params (e.g. constraint_observer); an ONNX "
                         "model has none")
    model = OnnxObserverModel(args.model)
    rate = model.card.rate_hz
    if args.data.suffix.lower() == ".mcap":
        chain = load_chain(REPO / model.card.chain)
        data = dataset_from_session(args.data, model.card.imus, model.card.chain, chain.body_names)
        if abs(data.rate_hz - rate) <= 0.01 * rate:  # stamps' jitter: the model's grid
            data = replace(data, rate_hz=rate)
    else:
        data = load_dataset(args.data)
    resampled_from = None
    if abs(data.rate_hz - rate) > 1e-6 * rate:
        resampled_from, data = data.rate_hz, data.resampled(rate)
    data, remount = _remounted(args, data)
    result = evaluate(model, data, args.warmup_s)
    _report(args, result, data, model.card.name, model.card.imus, remount, resampled_from)
    return 0


def _evaluate_node(args: argparse.Namespace) -> int:
    """Score an observer node kind (no model file) on a dataset npz."""
    kind = str(args.model)
    if args.data.suffix.lower() == ".mcap":
        raise ValueError(f"{args.data}: a node kind ('{kind}') is scored on a dataset .npz "
                         "(python tools/train_observer.py heldout ...)")
    data, remount = _remounted(args, load_dataset(args.data))
    result = evaluate_node(kind, data, args.warmup_s, progress=not args.json,
                           params=_node_params(args.param))
    _report(args, result, data, kind, data.imus, remount)
    return 0


def _remounted(args: argparse.Namespace,
               data: ImuDataset) -> tuple[ImuDataset, RemountReport | None]:
    """``data`` remounted and calibrated when ``--remount`` asks for it."""
    if args.remount is None:
        return data, None
    return remount_and_calibrate(data, args.remount)


def _node_params(pairs: list[str]) -> dict:
    """``--param KEY=VALUE`` pairs as node params (VALUE parsed as YAML: 0, 2.5, [1, 2])."""
    params = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"--param '{pair}': give KEY=VALUE, e.g. --param ball_tau_s=0")
        params[key.strip()] = yaml.safe_load(value)
    return params


def _report(args: argparse.Namespace, result: EvalResult, data: ImuDataset, name: str,
            imus: tuple[str, ...], remount: RemountReport | None = None,
            resampled_from: float | None = None) -> None:
    """Print the table (or JSON); write the plot and the predictions when asked."""
    if args.json:
        doc = {"model": str(args.model), "data": str(args.data),
               "sequences": data.n_sequences, "warmup_s": args.warmup_s,
               "per_joint": {b: s.as_dict() for b, s in result.stats.items()}}
        if resampled_from is not None:
            doc["resampled_from_hz"] = resampled_from
        if any(s.unscored for s in result.stats.values()):
            doc["unscored_no_truth"] = {b: s.unscored for b, s in result.stats.items()}
        if remount is not None:
            e = remount.rotation_error_deg
            doc["remount"] = {"seed": args.remount, "poor_calibrations": len(remount.poor),
                              "rotation_error_deg": {"median": float(np.median(e)),
                                                     "p90": float(np.percentile(e, 90)),
                                                     "max": float(e.max())}}
        print(json.dumps(doc))
    else:
        title = (f"{name} on {args.data.name}: {data.n_sequences} sequences x "
                 f"{data.duration_s:.0f} s, after {args.warmup_s:g} s warm-up")
        if resampled_from is not None:
            title += (f"\nthe data's {resampled_from:g} Hz resampled to the model's "
                      f"{data.rate_hz:g} Hz (IMU linearly, as the sync node does live)")
        if remount is not None:
            title += f"\n{remount.summary()} (--remount {args.remount})"
        print(format_table(result.stats, title))
        gaps = {b: s for b, s in result.stats.items() if s.unscored}
        if gaps:
            print("ground truth missing (NaN) after warm-up, left out of the statistics: " +
                  ", ".join(f"{b} {s.unscored} of {s.n + s.unscored} samples "
                            f"({100 * s.unscored / (s.n + s.unscored):.1f} %)"
                            for b, s in gaps.items()))
    if args.plot:
        plot_result(result, args.plot, title=f"{name} on {args.data.name}")
    if args.predictions:
        np.savez(args.predictions, q_rel=result.q_rel.astype(np.float32),
                 bodies=np.array(data.bodies), imus=np.array(imus),
                 rate_hz=data.rate_hz, model=str(args.model), data=str(args.data))
        print(f"wrote {args.predictions}")
