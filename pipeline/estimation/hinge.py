"""The hinge kernel of the constraint observer: one hinge angle from gyros and gravity (numba).

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain
from pipeline.kinematics.quaternion import cross3, qmul4

G = 9.81
MAX_BIAS_RAD_S = math.radians(10.0)  # the hinge's relative-rate bias estimate stays within


@njit(cache=True)
def hinge_kernel(theta: float, bias: float, seen: int, missing: int, ap: np.ndarray,
                 ac: np.ndarray, wp: np.ndarray, wc: np.ndarray, geo: np.ndarray,
                 rot: np.ndarray, dt: float, gain: float, bias_gain: float, tol: float,
                 max_cos: float, at_joint: bool, restart_after: int, angle: np.ndarray,
                 quat: np.ndarray) -> tuple[float, float, int, int]:
    """One hinge over a block: integrate the relative rate about the axis, pull towards the
    angle the accelerations show in both segments. ``seen`` counts the usable frames since the
    start: the k-th pulls by max(gain, 1 / k), so the first sets the angle outright and the
    next ones average with it (gyro-propagated) until the steady ``gain`` takes over.
    ``bias`` (rad/s) is the relative rate's bias about the axis, subtracted before the
    integration; once the steady gain has taken over, each pull also moves it by
    ``bias_gain`` times the angle's error (rad/s per rad; 0: not estimated), within
    MAX_BIAS_RAD_S: the integral term of a PI filter, so that a gyro bias no longer holds the
    angle off by bias x tau, nor drifts it between pulls.
    ``ap, ac, wp, wc`` (n, 3) parent/child acc m/s^2 and gyr rad/s in segment
    frames; ``geo`` (6, 3) rows: axis (parent frame), axis (child frame), plane bases e1p,
    e2p, e1c, e2c; ``rot`` (4,) the joint frame. A frame is usable when both accelerations
    are within ``tol`` m/s^2 of g (quasi-static: gravity alone), or, with ``at_joint`` (the
    accelerations already moved to the joint centre, ``to_joint_centre``), when their norms
    agree within ``tol`` (the same vector seen from both segments) and exceed g / 2.
    ``missing`` counts the frames without a finite rate (a sensor gap) up to this block;
    after ``restart_after`` or more of them the hinge starts again (``seen`` = 0): the angle
    moved by an unknown amount in the gap. Writes angle (n,) rad and quat (n, 4) w,x,y,z
    child to parent; returns the last angle, the bias, ``seen`` and the missing count."""
    for k in range(ap.shape[0]):
        rate = 0.0
        for j in range(3):
            rate += wc[k, j] * geo[1, j] - wp[k, j] * geo[0, j]
        if math.isfinite(rate):
            if missing >= restart_after:
                seen = 0
            missing = 0
            theta += dt * (rate - bias)
        else:
            missing += 1
        n1 = math.sqrt(ap[k, 0] ** 2 + ap[k, 1] ** 2 + ap[k, 2] ** 2)
        n2 = math.sqrt(ac[k, 0] ** 2 + ac[k, 1] ** 2 + ac[k, 2] ** 2)
        if at_joint:
            usable = abs(n1 - n2) < tol and min(n1, n2) > 0.5 * G
        else:
            usable = abs(n1 - G) < tol and abs(n2 - G) < tol
        if usable:
            dp = ap[k, 0] * geo[0, 0] + ap[k, 1] * geo[0, 1] + ap[k, 2] * geo[0, 2]
            dc = ac[k, 0] * geo[1, 0] + ac[k, 1] * geo[1, 1] + ac[k, 2] * geo[1, 2]
            if abs(dp) <= max_cos * n1 and abs(dc) <= max_cos * n2:
                x1 = ap[k, 0] * geo[2, 0] + ap[k, 1] * geo[2, 1] + ap[k, 2] * geo[2, 2]
                y1 = ap[k, 0] * geo[3, 0] + ap[k, 1] * geo[3, 1] + ap[k, 2] * geo[3, 2]
                x2 = ac[k, 0] * geo[4, 0] + ac[k, 1] * geo[4, 1] + ac[k, 2] * geo[4, 2]
                y2 = ac[k, 0] * geo[5, 0] + ac[k, 1] * geo[5, 1] + ac[k, 2] * geo[5, 2]
                target = math.atan2(y1, x1) - math.atan2(y2, x2)
                diff = (target - theta + math.pi) % (2.0 * math.pi) - math.pi
                seen += 1
                theta += max(gain, 1.0 / seen) * diff
                if gain * seen >= 1.0:
                    bias = min(max(bias - bias_gain * diff, -MAX_BIAS_RAD_S), MAX_BIAS_RAD_S)
        angle[k] = theta
        c, s = math.cos(0.5 * theta), math.sin(0.5 * theta)
        quat[k, 0], quat[k, 1], quat[k, 2], quat[k, 3] = qmul4(
            rot[0], rot[1], rot[2], rot[3], c, s * geo[1, 0], s * geo[1, 1], s * geo[1, 2])
    return theta, bias, seen, missing


def joint_levers(chain: Chain, body: int, parent_site: int, child_site: int) -> np.ndarray:
    """(2, 3) m: the centre of ``body``'s joint to its parent's IMU site ``parent_site`` and to
    its own IMU site ``child_site`` (indices into the chain's IMUs), each in its segment frame
    (the chain's IMU positions)."""
    r_parent = chain.imu_positions[parent_site] - chain.offsets[body]
    r_child = chain.imu_positions[child_site]  # the child's frame sits at the joint
    return np.stack([r_parent, r_child]).astype(np.float64)


@njit(cache=True)
def to_joint_centre(acc: np.ndarray, gyr: np.ndarray, r: np.ndarray, w_last: np.ndarray,
                    dt: float, out: np.ndarray) -> None:
    """The specific force at the joint centre from an IMU's, for a rigid segment:
    ``f_joint = f_imu - w x (w x r) - dw/dt x r`` (Seel et al. 2014). ``acc`` m/s^2 and
    ``gyr`` rad/s (n, 3) in the segment frame, ``r`` (3,) m from the joint centre to the IMU
    in that frame; ``w_last`` (3,) the rate before the block (updated; dw/dt by backward
    difference; NaN: no previous sample, dw/dt taken as 0). Writes ``out`` (n, 3) m/s^2;
    samples with a non-finite rate pass through, and the next one takes dw/dt as 0."""
    for k in range(acc.shape[0]):
        w0, w1, w2 = gyr[k, 0], gyr[k, 1], gyr[k, 2]
        if not (math.isfinite(w0) and math.isfinite(w1) and math.isfinite(w2)):
            out[k] = acc[k]
            w_last[0] = math.nan
            continue
        d0 = d1 = d2 = 0.0
        if math.isfinite(w_last[0]):
            d0, d1, d2 = (w0 - w_last[0]) / dt, (w1 - w_last[1]) / dt, (w2 - w_last[2]) / dt
        w_last[0], w_last[1], w_last[2] = w0, w1, w2
        c0, c1, c2 = cross3(w0, w1, w2, r[0], r[1], r[2])
        e0, e1, e2 = cross3(w0, w1, w2, c0, c1, c2)  # centripetal: w x (w x r)
        t0, t1, t2 = cross3(d0, d1, d2, r[0], r[1], r[2])  # tangential: dw/dt x r
        out[k, 0] = acc[k, 0] - e0 - t0
        out[k, 1] = acc[k, 1] - e1 - t1
        out[k, 2] = acc[k, 2] - e2 - t2
