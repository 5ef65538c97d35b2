"""The calibration procedure as a chain motion: a still neutral pose, then each hinge flexed.

Used to simulate what a user does when asked to calibrate (``imuflow calibrate``): stand in
the neutral pose (all joint angles zero, root upright) for ``static_s`` s, then flex and
extend every hinge ``flexions`` times while the root sways and turns a little, as a person's
thigh does. Angles in rad, times in s; smooth (``motion.Channel``), so the simulated IMU
signals are exact.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.kinematics.chain import Chain, JointType
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
