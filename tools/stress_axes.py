"""Score observers along one stress axis at a time: held-out sets with a single generator
setting pushed beyond what training used, so the combined stress set's error can be split
into its causes.

Usage (from the repository root)::

    python tools/stress_axes.py models/arm3-sparse.onnx --problem arm3-wide --sequences 16
    python tools/stress_axes.py models/knee.onnx --problem knee-field --json

Each axis is its own set of ``--sequences`` x ``--duration-s`` sequences from seeds
3,000,000 on (disjoint from every training, validation, held-out and stress seed), the
problem's own settings with one change (``AXES``; sensor gaps and the mirror image are made in
the generated data, ``DATA_CHANGES``, and the frames inside a gap are scored too: an observer
holds its estimate there). Every model given and the constraint observer (no training) are
scored on the same sets; the table gives the hinge means (deg) and, for a free root, the
root's inclination mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings
from pipeline.kinematics.vibration import VibrationSettings
from tools.training.data import generate
from tools.training.problem import get_problem

SEED0 = 3_000_000
Vary = Callable[[SimSettings], SimSettings]


def _motion(**scale: float) -> Vary:
    """Settings with the motion's named fields multiplied by the given factors."""
    def vary(s: SimSettings) -> SimSettings:
        m = s.motion
        return dataclasses.replace(s, motion=dataclasses.replace(
            m, **{k: getattr(m, k) * f for k, f in scale.items()}))
    return vary


def _noise(**scale: float) -> ImuNoise:
    """The default sensor errors with the named fields multiplied by the given factors."""
    n = ImuNoise()
    return dataclasses.replace(n, **{k: getattr(n, k) * f for k, f in scale.items()})


# name -> (what changes, settings change or None, sensor errors or None)
AXES: dict[str, tuple[str, Vary | None, ImuNoise | None]] = {
    "none": ("the problem's held-out settings (seeds of this tool)", None, None),
    "root linear acc x3.5": (
        "root translation: accelerations 3.5x, speeds 1.9x, range 3.5x",
        _motion(max_acc_m_s2=3.5, max_rate_m_s=math.sqrt(3.5), root_translation_m=3.5), None),
    "joint motion x1.6": (
        "joint and root rotation rates 1.6x, accelerations 2.6x, moves 1.6x shorter",
        _motion(max_rate_rad_s=1.6, max_acc_rad_s2=2.56, seg_min_s=1 / 1.6, seg_max_s=1 / 1.6),
        None),
    "long rests": ("rests after 60 % of moves, up to 8 s",
                   lambda s: dataclasses.replace(s, motion=dataclasses.replace(
                       s.motion, rest_prob=0.6, rest_max_s=8.0)), None),
    "rests to 30 s": ("rests after 60 % of moves, up to 30 s (give --duration-s 180 or more)",
                      lambda s: dataclasses.replace(s, motion=dataclasses.replace(
                          s.motion, rest_prob=0.6, rest_max_s=30.0)), None),
    "gyro bias x2": ("gyro biases up to 6 deg/s, accelerometer biases up to 1 m/s^2", None,
                     _noise(gyr_bias_max=2.0, acc_bias_max=2.0)),
    "noise x2": ("white noise 2x on both sensors", None,
                 _noise(acc_noise_density=2.0, gyr_noise_density=2.0)),
    "sensor low-pass 15 Hz": ("both sensors low-pass acc and gyr at 15 Hz (2nd-order "
                              "Butterworth, causal; about 15 ms of delay)",
                              lambda s: dataclasses.replace(s, bandwidth_hz=15.0), None),
    "vibration 6 m/s^2": ("3-15 Hz motion on top of the moves: root acceleration 6 m/s^2 and "
                          "angular rates 0.5 rad/s rms per axis (pipeline.kinematics.vibration)",
                          lambda s: dataclasses.replace(s, vibration=VibrationSettings(6.0, 0.5)),
                          None),
    "mounting 10 deg": ("residual sensor-to-segment rotation up to 10 deg",
                        lambda s: dataclasses.replace(s, mount_rotation_max_rad=max(
                            s.mount_rotation_max_rad, math.radians(10.0))), None),
    "sensor gaps": ("the last IMU's data missing (NaN, as sync leaves gaps longer than its "
                    "max_gap_s) for 0.2-0.6 s, five times a minute", None, None),
    "mirrored": ("the set's mirror image in the bodies' x-z planes (acc y, gyro x and z "
                 "negated, every rotation reflected): the other side's limb where the chain's "
                 "IMU sites are on the midline (y = 0), as on the knee", None, None),
}
GAPS_PER_MINUTE, GAP_S = 5, (0.2, 0.6)


def sensor_gaps(data: ImuDataset) -> ImuDataset:
    """``data`` with GAPS_PER_MINUTE gaps of GAP_S s (NaN acc and gyr) in the last IMU of
    every sequence, at seeded random times after the first 5 s."""
    rng = np.random.default_rng(SEED0)
    imu, rate = data.imu.copy(), data.rate_hz
    n_imu = len(data.imus)
    last = slice((n_imu - 1) * 6, n_imu * 6)
    t_ = imu.shape[1]
    count = max(1, round(GAPS_PER_MINUTE * t_ / rate / 60))
    for s in range(imu.shape[0]):
        starts = rng.choice(np.arange(round(5 * rate), t_ - round(GAP_S[1] * rate)), count,
                            replace=False)
        for start in starts:
            imu[s, start:start + round(rng.uniform(*GAP_S) * rate), last] = np.nan
    return dataclasses.replace(data, imu=imu)


def mirrored(data: ImuDataset) -> ImuDataset:
    """``data`` reflected in every body's (and the earth's) x-z plane: a reflection S =
    diag(1, -1, 1) turns a vector v into S v and a rotation R into S R S, so acc (a vector) has
    y negated, gyro (an axial vector: det(S) S w) x and z, and each quaternion w, x, y, z
    becomes w, -x, y, -z."""
    imu_sign = np.tile(np.array([1, -1, 1, -1, 1, -1], data.imu.dtype), len(data.imus))
    q_sign = np.array([1, -1, 1, -1], data.q_rel.dtype)
    return dataclasses.replace(data, imu=data.imu * imu_sign, q_rel=data.q_rel * q_sign)


# axes whose change is made to the generated data rather than to the generator's settings
DATA_CHANGES: dict[str, Callable[[ImuDataset], ImuDataset]] = {"sensor gaps": sensor_gaps,
                                                              "mirrored": mirrored}


def _means(result) -> dict[str, float]:
    return {b: round(float(st.mean_deg), 2) for b, st in result.stats.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="+", help="ONNX models (card beside each)")
    p.add_argument("--problem", required=True, help="tools/training/problem.py name")
    p.add_argument("--sequences", type=int, default=16)
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--axis", action="append", choices=sorted(AXES),
                   help="only these axes (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    problem = get_problem(args.problem)
    seeds = np.arange(SEED0, SEED0 + args.sequences)
    models = [OnnxObserverModel(m) for m in args.models]
    rows = []
    for axis in args.axis or list(AXES):
        what, vary, noise = AXES[axis]
        data = generate(problem, seeds, args.duration_s, vary=vary, noise=noise,
                        progress=not args.json)
        if axis in DATA_CHANGES:
            data = DATA_CHANGES[axis](data)
        row = {"axis": axis, "change": what,
               "constraint_observer": _means(evaluate_node("constraint_observer", data,
                                                           progress=False))}
        for path, model in zip(args.models, models):
            row[str(path)] = _means(evaluate(model, data))
        rows.append(row)
        if not args.json:
            print(_line(row, args.models), flush=True)
    if args.json:
        print(json.dumps({"problem": problem.name, "sequences": args.sequences,
                          "duration_s": args.duration_s, "seed0": SEED0, "rows": rows}))
    return 0


def _line(row: dict, models: list[Path]) -> str:
    """One table row: axis, then per observer its hinge (and root) means."""
    cells = [f"{row['axis']:<22}"]
    for name in ["constraint_observer", *map(str, models)]:
        cells.append(f"{Path(name).stem}: " + " / ".join(f"{b} {v:.2f}"
                                                        for b, v in row[name].items()))
    return " | ".join(cells)


if __name__ == "__main__":
    sys.exit(main())
