"""A held-out set from a motion family training never used: sums of sines, not keyframes.

The project's generator (``pipeline.kinematics.motion``) moves every joint from random
keyframe to random keyframe with rests; every model is trained on that. Another simulator
moves differently, and a model tuned to one motion family can fail on another (issue 14).
This set drives each coordinate of a problem's chain by a sum of three sines of random
frequency, phase and amplitude, with no rests:

- free root: position +-0.3 m (x, y), +-0.2 m (z); yaw +-180 deg; pitch and roll +-150 deg,
  so the root is more than 90 deg from upright about a third of the time;
- hinges: about the middle of their limits, over the whole range (at most +-115 deg);
- spherical joints: +-0.8 rad per rotation-vector component.

``--fast`` doubles the frequencies (joints to 1.2 Hz, the root to 0.5 Hz). Sensor errors and
the rest of the simulation (segment lengths, IMU sites, residual mounting errors, timing
jitter, dropped samples) are the problem's, as its held-out set has them; seeds from
3,000,000. Example::

    python tools/sine_motion_set.py --problem arm3-sparse --sequences 32 --out SINES.npz
    imuflow eval models/arm3-sparse.onnx SINES.npz
    imuflow eval constraint_observer SINES.npz
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.motion import Channel, Motion
from tools.training.data import generate
from tools.training.problem import get_problem

SEED0 = 3_000_000
KNOT_S = 0.02  # s between the channels' knots (the sines sampled densely)


def sines(rng: np.random.Generator, duration_s: float, amplitude: float, f_lo: float,
          f_hi: float, centre: float = 0.0) -> Channel:
    """centre + three sines of random frequency (f_lo..f_hi Hz), phase and share of
    ``amplitude`` (the sum stays within +-amplitude), in the coordinate's unit (m or rad),
    as a channel with knots every KNOT_S s."""
    t = np.arange(0.0, duration_s + 1.0, KNOT_S)
    f, phase = rng.uniform(f_lo, f_hi, 3), rng.uniform(0.0, 2.0 * math.pi, 3)
    share = rng.dirichlet(np.ones(3)) * amplitude
    return Channel(t, centre + sum(a * np.sin(2 * math.pi * fk * t + p)
                                   for a, fk, p in zip(share, f, phase, strict=True)))


def sine_motion(chain: Chain, seed: int, duration_s: float, fast: bool = False) -> Motion:
    """Every coordinate of ``chain`` as a sum of sines (module docstring)."""
    rng = np.random.default_rng([seed, 99])
    hz = 1.2 if fast else 0.6  # fastest joint frequency
    channels = []
    for i, body in enumerate(chain.bodies):
        kind = body.joint.type
        if kind == JointType.FREE:
            x, y, z = body.joint.offset
            channels.append((sines(rng, duration_s, 0.3, 0.05, hz, x),
                             sines(rng, duration_s, 0.3, 0.05, hz, y),
                             sines(rng, duration_s, 0.2, 0.05, hz, z),
                             sines(rng, duration_s, math.pi, 0.02, 0.3 * hz),
                             sines(rng, duration_s, math.radians(150), 0.02, 0.4 * hz),
                             sines(rng, duration_s, math.radians(150), 0.02, 0.4 * hz)))
        elif kind == JointType.SPHERICAL:
            channels.append(tuple(sines(rng, duration_s, 0.8, 0.1, hz) for _ in range(3)))
        elif kind == JointType.HINGE:
            lo, hi = chain.limits[i]
            if math.isnan(lo) or math.isnan(hi):
                lo, hi = -2.0, 2.0
            half = min(0.5 * (hi - lo), 2.0)
            channels.append((sines(rng, duration_s, half, 0.1, hz, 0.5 * (lo + hi)),))
        else:
            raise ValueError(f"{chain.name}: joint type {kind} of '{body.name}' not driven here")
    return Motion(chain, tuple(channels), duration_s)


def generate_sines(problem_name: str, sequences: int, duration_s: float, fast: bool,
                   rate_hz: float = 100.0, progress: bool = True) -> ImuDataset:
    """The set (module docstring) as an ImuDataset: ``tools/training/data.generate`` with the
    sines as every sequence's motion."""
    data = generate(get_problem(problem_name), list(range(SEED0, SEED0 + sequences)),
                    duration_s, rate_hz, progress=progress,
                    motion=lambda chain, seed, d: sine_motion(chain, seed, d, fast))
    return replace(data, settings=dict(data.settings, fast=fast,
                                       motion="sums of sines (tools/sine_motion_set.py)"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--problem", required=True, help="a problem of tools/training/problem.py")
    p.add_argument("--sequences", type=int, default=32)
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--fast", action="store_true", help="twice the frequencies")
    p.add_argument("--out", type=Path, required=True, help="dataset .npz to write")
    args = p.parse_args(argv)
    generate_sines(args.problem, args.sequences, args.duration_s, args.fast).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
