"""Heading drift of the constraint observer's spherical joints (the hips of lower_body).

Simulated lower-body motion (seven IMUs), the constraint estimator fed 1 s blocks, its heading
aligned to the true pose after 2 s (as a user standing in the calibration pose would reset
it); then the median angle error of both hips (deg, body to parent) in the first and in the
fifth minute (and the fifth minute's 90th percentile), and of the knees and ankles (hinges).
``--ball-tau-s 0`` turns the heading's pull towards the joint centre's acceleration off
(resets only); ``--slow`` draws slow motion with long rests; ``--placement-jitter-m`` moves
each simulated IMU along its segment (the estimator keeps the chain's positions, unless
``--fit-joint-centres-s S`` fits every joint's lever arms to the first S s first, as
``imuflow calibrate`` does). Run: ``python tools/spherical_drift.py [--seeds 1 2 3 4]
[--gyro-bias-deg-s 3.0] [--ball-tau-s 2.0] [--slow] [--placement-jitter-m 0.05]
[--fit-joint-centres-s 60]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.calibration.joint_centre import joint_centres  # noqa: E402
from pipeline.estimation.constraint import ConstraintEstimator, ConstraintSettings  # noqa: E402
from pipeline.kinematics.chain import Chain, load_chain  # noqa: E402
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate  # noqa: E402
from pipeline.kinematics.motion import MotionSettings  # noqa: E402
from pipeline.kinematics.quaternion import np_qangle  # noqa: E402

RATE_HZ = 100.0
DURATION_S = 300.0
RESET_AT = 200  # frames: the heading reset after 2 s
# slow motion with long rests: the joint centre rarely accelerates 1 m/s^2 horizontally
SLOW = MotionSettings(max_rate_m_s=0.2, max_acc_m_s2=1.5, max_rate_rad_s=1.5,
                      max_acc_rad_s2=15.0, rest_prob=0.5, rest_max_s=6.0)


def track(chain: Chain, acc: np.ndarray, gyr: np.ndarray, settings: ConstraintSettings,
          resets: tuple[int, ...] = (), truth: np.ndarray | None = None,
          rate_hz: float = RATE_HZ, levers: dict[str, np.ndarray] | None = None
          ) -> tuple[np.ndarray, ConstraintEstimator, list[dict[str, float]]]:
    """q_rel (T, n_bodies, 4) of the constraint estimator fed 1 s blocks of (T, n_imu, 3) acc
    m/s^2 and gyr rad/s, the estimator, and what each reset changed (deg per joint): after
    frame k - 1 for each k in ``resets`` (block ends), a heading reset to ``truth[k - 1]``
    (the pose, (T, n_bodies, 4))."""
    est = ConstraintEstimator(chain, list(chain.imu_names), rate_hz, settings, levers)
    n, block = len(acc), round(rate_hz)
    q = np.empty((n, chain.n_bodies, 4))
    angle = np.empty((n, len(chain.hinge_bodies)))
    changes = []
    for i in range(0, n, block):
        est.update(acc[i:i + block], gyr[i:i + block], q[i:i + block], angle[i:i + block])
        if i + block in resets:
            changes.append(est.heading_reset(truth[i + block - 1]))
    return q, est, changes


def drift(seed: int, noise: ImuNoise = ImuNoise(), sim: SimSettings = SimSettings(),
          settings: ConstraintSettings = ConstraintSettings(),
          fit_s: float = 0.0) -> dict[str, float]:
    """Errors (deg) of one simulated run: hips' median in minute 1 and 5 and p90 in minute
    5, knees' and ankles' median. ``fit_s`` > 0: every joint's lever arms fitted to the first
    ``fit_s`` s first (``joint_centre.py``, as ``imuflow calibrate`` does)."""
    chain = load_chain(REPO / "configs/chains/lower_body.yaml")
    rec = simulate(chain, DURATION_S, RATE_HZ, seed, noise, sim)
    levers = None
    if fit_s > 0:
        k = round(fit_s * RATE_HZ)
        fits = joint_centres(chain, {n: rec.acc[:k, i].astype(np.float64)
                                     for i, n in enumerate(chain.imu_names)},
                             {n: rec.gyr[:k, i].astype(np.float64)
                              for i, n in enumerate(chain.imu_names)},
                             {n: np.eye(3) for n in chain.imu_names}, RATE_HZ)
        levers = {name: f.levers for name, f in fits.items() if f.ok}
    q, _, _ = track(chain, rec.acc, rec.gyr, settings, (RESET_AT,), rec.q_rel, levers=levers)
    err = np.degrees(np_qangle(q[RESET_AT:], rec.q_rel[RESET_AT:]))  # (T, bodies)
    hips = [chain.index(b) for b in ("thigh_l", "thigh_r")]
    legs = [chain.index(b) for b in ("shank_l", "foot_l", "shank_r", "foot_r")]
    minute = round(60 * RATE_HZ)
    return {"hips_minute_1": float(np.median(err[:minute, hips])),
            "hips_minute_5": float(np.median(err[4 * minute:, hips])),
            "hips_minute_5_p90": float(np.percentile(err[4 * minute:, hips], 90)),
            "knees_ankles": float(np.median(err[:, legs]))}


def main() -> None:
    """Print one line per seed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--gyro-bias-deg-s", type=float, default=None,
                    help="max constant gyro bias per axis (default: the simulator's, 3 deg/s)")
    ap.add_argument("--ball-tau-s", type=float, default=ConstraintSettings().ball_tau_s,
                    help="time constant of the hips' heading pull, s (0: resets only)")
    ap.add_argument("--slow", action="store_true", help="slow motion with long rests")
    ap.add_argument("--placement-jitter-m", type=float, default=SimSettings().placement_jitter_m,
                    help="+- shift of each simulated IMU along its segment, m")
    ap.add_argument("--fit-joint-centres-s", type=float, default=0.0,
                    help="fit every joint's lever arms to the first this many s first (as "
                         "imuflow calibrate does; 0: the chain's IMU positions)")
    args = ap.parse_args()
    noise = ImuNoise()
    if args.gyro_bias_deg_s is not None:
        noise = dataclasses.replace(noise, gyr_bias_max=math.radians(args.gyro_bias_deg_s))
    sim = SimSettings(motion=SLOW if args.slow else MotionSettings(),
                      placement_jitter_m=args.placement_jitter_m)
    settings = ConstraintSettings(ball_tau_s=args.ball_tau_s)
    print(f"gyro bias up to {math.degrees(noise.gyr_bias_max):.1f} deg/s per axis; hips' "
          f"heading pull tau {args.ball_tau_s} s; errors, deg")
    for seed in args.seeds:
        r = drift(seed, noise, sim, settings, args.fit_joint_centres_s)
        print(f"seed {seed}: hips minute 1 {r['hips_minute_1']:.1f}, minute 5 "
              f"{r['hips_minute_5']:.1f} (p90 {r['hips_minute_5_p90']:.1f}); knees and ankles "
              f"{r['knees_ankles']:.1f}")


if __name__ == "__main__":
    main()
