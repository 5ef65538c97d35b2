"""The hinge kernel of the constraint observer: one hinge angle from gyros and gravity (numba).

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.quaternion import qmul4

G = 9.81


@njit(cache=True)
def hinge_kernel(theta: float, started: bool, ap: np.ndarray, ac: np.ndarray, wp: np.ndarray,
                 wc: np.ndarray, geo: np.ndarray, rot: np.ndarray, dt: float, gain: float,
                 still_acc: float, max_cos: float, angle: np.ndarray, quat: np.ndarray
                 ) -> tuple[float, bool]:
    """One hinge over a block: integrate the relative rate about the axis, pull towards the
    angle gravity shows in both segments when both are quasi-static (the first such frame sets
    the angle outright). ``ap, ac, wp, wc`` (n, 3) parent/child acc m/s^2 and gyr rad/s in
    segment frames; ``geo`` (6, 3) rows: axis (parent frame), axis (child frame), plane bases
    e1p, e2p, e1c, e2c; ``rot`` (4,) the joint frame. Writes angle (n,) rad and quat (n, 4)
    w,x,y,z child to parent; returns the last angle and whether it started."""
    for k in range(ap.shape[0]):
        rate = 0.0
        for j in range(3):
            rate += wc[k, j] * geo[1, j] - wp[k, j] * geo[0, j]
        if math.isfinite(rate):
            theta += dt * rate
        n1 = math.sqrt(ap[k, 0] ** 2 + ap[k, 1] ** 2 + ap[k, 2] ** 2)
        n2 = math.sqrt(ac[k, 0] ** 2 + ac[k, 1] ** 2 + ac[k, 2] ** 2)
        if abs(n1 - G) < still_acc and abs(n2 - G) < still_acc:
            dp = ap[k, 0] * geo[0, 0] + ap[k, 1] * geo[0, 1] + ap[k, 2] * geo[0, 2]
            dc = ac[k, 0] * geo[1, 0] + ac[k, 1] * geo[1, 1] + ac[k, 2] * geo[1, 2]
            if abs(dp) <= max_cos * n1 and abs(dc) <= max_cos * n2:
                x1 = ap[k, 0] * geo[2, 0] + ap[k, 1] * geo[2, 1] + ap[k, 2] * geo[2, 2]
                y1 = ap[k, 0] * geo[3, 0] + ap[k, 1] * geo[3, 1] + ap[k, 2] * geo[3, 2]
                x2 = ac[k, 0] * geo[4, 0] + ac[k, 1] * geo[4, 1] + ac[k, 2] * geo[4, 2]
                y2 = ac[k, 0] * geo[5, 0] + ac[k, 1] * geo[5, 1] + ac[k, 2] * geo[5, 2]
                target = math.atan2(y1, x1) - math.atan2(y2, x2)
                diff = (target - theta + math.pi) % (2.0 * math.pi) - math.pi
                theta += gain * diff if started else diff
                started = True
        angle[k] = theta
        c, s = math.cos(0.5 * theta), math.sin(0.5 * theta)
        quat[k, 0], quat[k, 1], quat[k, 2], quat[k, 3] = qmul4(
            rot[0], rot[1], rot[2], rot[3], c, s * geo[1, 0], s * geo[1, 1], s * geo[1, 2])
    return theta, started
