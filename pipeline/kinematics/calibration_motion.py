"""The calibration procedure as a chain motion: a still neutral pose, then each hinge flexed.

Used to simulate what a user does when asked to calibrate (``imuflow calibrate``): stand in
the neutral pose (all joint angles zero, root upright) for ``static_s`` s, then flex and
extend every hinge ``flexions`` times while the root sways and turns a little, as a person's
thigh does. Angles in rad, times in s; smooth (``motion.Channel``), so the simulated IMU
signals are exact. ``randomly_mounted`` straps a chain's IMUs on at random rotations and
``simulated_procedure`` gives what such sensors read during the procedure.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate
from pipeline.kinematics.motion import Channel, Motion


def _const(value: float, duration_s: float) -> Channel:
    return Channel(np.array([0.0, duration_s + 1.0]), np.array([value, value]))


def _sway(rng: np.random.Generator, start_s: float, duration_s: float, amp: float,
          period_s: float) -> Channel:
    """Zero until start_s, then random keyframes within +-amp about every period_s/2 s."""
    t, p = [0.0, start_s], [0.0, 0.0]
    while t[-1] < duration_s:
        t.append(t[-1] + period_s / 2 * rng.uniform(0.7, 1.3))
        p.append(float(rng.uniform(-amp, amp)))
    return Channel(np.asarray(t), np.asarray(p))


def _flexions(rng: np.random.Generator, start_s: float, duration_s: float, lo: float, hi: float,
              flexions: int) -> Channel:
    """Zero, then ``flexions`` moves to 60-90 % of the range and back, filling the time."""
    period = (duration_s - start_s) / max(flexions, 1)
    t, p = [0.0, start_s], [0.0, 0.0]
    for k in range(flexions):
        peak = (hi if abs(hi) >= abs(lo) else lo) * rng.uniform(0.6, 0.9)
        t += [start_s + (k + 0.5) * period, start_s + (k + 1) * period]
        p += [float(peak), 0.0]
    return Channel(np.asarray(t), np.asarray(p))


def calibration_motion(chain: Chain, seed: int, static_s: float = 3.0,
                       functional_s: float = 24.0, flexions: int = 10,
                       root_sway_rad: float = 0.25) -> Motion:
    """Neutral pose for static_s s, then functional_s s of hinge flexions with root sway."""
    rng = np.random.default_rng(seed)
    total = static_s + functional_s
    ramp = static_s + 0.5
    channels = []
    for i, body in enumerate(chain.bodies):
        jt = body.joint.type
        if jt == JointType.FREE:
            pos = [_const(float(x), total) for x in body.joint.offset]
            yaw = _sway(rng, ramp, total, 2 * root_sway_rad, 3.0)
            tilt = [_sway(rng, ramp, total, root_sway_rad, 2.0) for _ in range(2)]
            channels.append((*pos, yaw, *tilt))
        elif jt == JointType.SPHERICAL:
            channels.append(tuple(_sway(rng, ramp, total, root_sway_rad, 2.0) for _ in range(3)))
        elif jt == JointType.HINGE:
            lo, hi = chain.limits[i]
            if math.isnan(lo) or math.isnan(hi):
                lo, hi = -math.pi / 2, math.pi / 2
            channels.append((_flexions(rng, ramp, total, max(lo, 0.0) if hi > 0 else lo,
                                       hi if hi > 0 else min(hi, 0.0), flexions),))
        else:
            channels.append((_const(0.0, total),))
    return Motion(chain, tuple(channels), total)


def randomly_mounted(chain: Chain, seed: int) -> Chain:
    """The chain with each IMU strapped on at a uniformly random rotation (all of SO(3)),
    sensor to segment, as its ``rotation``."""
    rots = Rotation.random(len(chain.imus), random_state=seed).as_quat()  # x, y, z, w
    return replace(chain, imus=tuple(
        replace(site, rotation=(float(q[3]), float(q[0]), float(q[1]), float(q[2])))
        for site, q in zip(chain.imus, rots, strict=True)))


def simulated_procedure(chain: Chain, seed: int, rate_hz: float, motion: Motion | None = None,
                        **kw: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """acc (m/s^2) and gyr (rad/s) per IMU name, sensor frames, float64, of the procedure
    (``calibration_motion`` with ``kw``, or ``motion``) with DESIGN.md's sensor errors."""
    motion = motion or calibration_motion(chain, seed, **kw)
    rec = simulate(chain, motion.duration_s, rate_hz, seed, ImuNoise(), SimSettings(),
                   motion=motion)
    acc = {n: rec.acc[:, k].astype(np.float64) for k, n in enumerate(rec.imu_names)}
    gyr = {n: rec.gyr[:, k].astype(np.float64) for k, n in enumerate(rec.imu_names)}
    return acc, gyr
