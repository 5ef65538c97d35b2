"""Score the constraint observer on arm3 under VQF 6D parameter sets: how
pipeline/estimation/vqf_tuning.py's BODY_WORN was chosen.

Usage (from the repository root)::

    python tools/vqf_tuning_grid.py                       # the package defaults, BODY_WORN
    python tools/vqf_tuning_grid.py --grid                # the grid BODY_WORN was chosen from
    python tools/vqf_tuning_grid.py --set tauAcc=2 --set biasForgettingTime=40
    python tools/vqf_tuning_grid.py --root-axes           # the root's tauAcc (ROOT_BODY_WORN)

Tuning sets: arm3-wide's settings (tools/training/problem.py), ``--sequences`` x 60 s from
seed 3,100,000 on (disjoint from every training, validation, held-out, stress and
stress-axes seed), once with DESIGN.md's realistic sensors (gyro biases up to 3 deg/s) and
once with gyro biases up to 6 deg/s (uncalibrated consumer IMUs). The same parameters go to
the constraint observer's per-IMU VQFs (its ``vqf`` param) and to the root's orientation node
(``vqf`` and ``tau_acc_s``; the default rows give it what ships: ROOT_BODY_WORN). Output: per
parameter set, the root's inclination mean and both hinge means in degrees after 5 s, per
tuning set. ``--root-axes`` scores the orientation node's tauAcc alone on
tools/stress_axes.py's sets (16 x 60 s from seed 3,000,000), where the root's linear
acceleration is 3.5x: the root takes the whole body's acceleration.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.estimation.vqf_tuning import (
    BODY_WORN,
    ROOT_BODY_WORN,
    VQF_PACKAGE_DEFAULTS,
    VqfTuning,
)
from pipeline.evaluation.node_eval import evaluate_node
from pipeline.kinematics.imu_synth import ImuNoise
from tools.training.data import generate
from tools.training.problem import get_problem

SEED0 = 3_100_000
GYRO_BIAS_DEG_S = (3.0, 6.0)
GRID = {"tauAcc": (1.0, 1.5, 2.0, 3.0), "biasSigmaInit": (0.3, 0.5, 1.0),
        "biasForgettingTime": (10.0, 20.0, 40.0, 100.0), "biasClip": (8.0,),
        "biasSigmaMotion": (0.05, 0.1)}


ROOT_TAU_ACC_S = (1.5, 2.0, 3.0)
ROOT_AXES = ("none", "root linear acc x3.5", "gyro bias x2", "joint motion x1.6")


def _root_params(tuning: VqfTuning) -> dict:
    """The orientation node's params for ``tuning``."""
    kwargs = tuning.kwargs()
    return {"tau_acc_s": kwargs.pop("tauAcc"), "vqf": kwargs}


def score(tuning: VqfTuning, sets: dict, root: VqfTuning | None = None
          ) -> dict[float, dict[str, float]]:
    """Per set, the mean error (deg) of each scored body; the root with ``root`` (default
    ``tuning``)."""
    out = {}
    for name, data in sets.items():
        res = evaluate_node("constraint_observer", data, progress=False,
                            params={"vqf": tuning.kwargs()},
                            root_params=_root_params(root or tuning))
        out[name] = {b: round(float(s.mean_deg), 2) for b, s in res.stats.items()}
    return out


def root_axes(sequences: int) -> None:
    """Print the root's inclination mean per stress axis and orientation-node tauAcc."""
    from tools import stress_axes

    problem = get_problem("arm3-wide")
    seeds = np.arange(stress_axes.SEED0, stress_axes.SEED0 + sequences)
    print(f"root inclination mean (deg) after 5 s; {sequences} x 60 s per axis")
    for axis in ROOT_AXES:
        _, vary, noise = stress_axes.AXES[axis]
        data = {axis: generate(problem, seeds, 60.0, vary=vary, noise=noise, progress=False)}
        roots = [ROOT_BODY_WORN.with_overrides({"tauAcc": tau}) for tau in ROOT_TAU_ACC_S]
        cells = [f"tauAcc {r.tauAcc:g}: {score(BODY_WORN, data, r)[axis]['seg1']:.2f}"
                 for r in roots]
        print(f"{axis:<22} | " + " | ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=8, help="per tuning set (default 8)")
    p.add_argument("--grid", action="store_true", help="score every combination of GRID")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="score BODY_WORN with this VQF parameter replaced (repeatable)")
    p.add_argument("--root-axes", action="store_true",
                   help="the root's tauAcc on tools/stress_axes.py's sets (16 sequences each)")
    args = p.parse_args(argv)
    if args.root_axes:
        root_axes(16)
        return 0
    problem = get_problem("arm3-wide")
    seeds = np.arange(SEED0, SEED0 + args.sequences)
    sets = {b: generate(problem, seeds, 60.0, noise=ImuNoise(gyr_bias_max=math.radians(b)),
                        progress=False) for b in GYRO_BIAS_DEG_S}
    if args.grid:
        tunings = [(VqfTuning(**dict(zip(GRID, values))), None)
                   for values in itertools.product(*GRID.values())]
    elif args.set:
        pairs = (s.split("=", 1) for s in args.set)
        tunings = [(BODY_WORN.with_overrides({k: float(v) for k, v in pairs}), None)]
    else:  # what the package gives, and what ships
        tunings = [(VQF_PACKAGE_DEFAULTS, None), (BODY_WORN, ROOT_BODY_WORN)]
    print(f"mean errors (deg) after 5 s; {args.sequences} x 60 s per set")
    for tuning, root in tunings:
        cells = [f"gyro bias {b:g} deg/s: " + " / ".join(f"{k} {v:.2f}" for k, v in means.items())
                 for b, means in score(tuning, sets, root).items()]
        print(f"{tuning.kwargs()} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
