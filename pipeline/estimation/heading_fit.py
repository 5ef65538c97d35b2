"""Compiled kernels of the two-axis constraint observer (numba): heading fit and angle split.

``fit_delta_2d`` is qmt's ``estimateDelta2d`` with the 'euler' constraint (Gauss-Newton on
the heading offset ``delta`` so that the two joint axes stay orthogonal in the common earth
frame, each sample weighted by how horizontal both axes are), computed the same way, number
for number (tests/test_joint_heading.py compares them); ``split_two_axis`` turns the two
orientations and the offset into both hinge angles and body-to-parent quaternions.

Units: quaternions w, x, y, z; angles rad.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.quaternion import qmul4, qrot3


@njit(cache=True)
def axis_to(target: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Quaternion (4,) turning unit ``target`` onto unit ``axis`` about their cross product
    (qmt's ``quatFromAngleAxis(arccos(target . axis), target x axis)``)."""
    c = target[0] * axis[0] + target[1] * axis[1] + target[2] * axis[2]
    x = target[1] * axis[2] - target[2] * axis[1]
    y = target[2] * axis[0] - target[0] * axis[2]
    z = target[0] * axis[1] - target[1] * axis[0]
    n = math.sqrt(x * x + y * y + z * z)
    angle = math.acos(min(1.0, max(-1.0, c)))
    out = np.zeros(4)
    if n < 1e-12:  # parallel: identity; antiparallel: half a turn about a perpendicular
        if c > 0:
            out[0] = 1.0
        else:
            p = np.array([1.0, 0.0, 0.0]) if abs(target[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
            px = target[1] * p[2] - target[2] * p[1]
            py = target[2] * p[0] - target[0] * p[2]
            pz = target[0] * p[1] - target[1] * p[0]
            pn = math.sqrt(px * px + py * py + pz * pz)
            out[1], out[2], out[3] = px / pn, py / pn, pz / pn
        return out
    s = math.sin(0.5 * angle) / n
    out[0], out[1], out[2], out[3] = math.cos(0.5 * angle), x * s, y * s, z * s
    return out


@njit(cache=True)
def _errors(q1: np.ndarray, q2: np.ndarray, j1: np.ndarray, j2: np.ndarray, b1: np.ndarray,
            b2: np.ndarray, delta: float, err: np.ndarray, jac: np.ndarray,
            weight: np.ndarray) -> None:
    """Per sample: weighted second Euler angle (error), its derivative by delta, weight."""
    cz, sz = math.cos(0.5 * delta), math.sin(0.5 * delta)
    dw, dz = -math.sin(0.5 * delta), math.cos(0.5 * delta)  # d/d(delta) of Rz, normalised
    for k in range(q1.shape[0]):
        # qE1B1 = inv(q1 * qB1S1)
        w, x, y, z = qmul4(q1[k, 0], q1[k, 1], q1[k, 2], q1[k, 3], b1[0], b1[1], b1[2], b1[3])
        iw, ix, iy, iz = w, -x, -y, -z
        # qB2E2 = q2 * qB2S2
        ew, ex, ey, ez = qmul4(q2[k, 0], q2[k, 1], q2[k, 2], q2[k, 3], b2[0], b2[1], b2[2], b2[3])
        # qB2B1 = qE1B1 * Rz(delta) * qB2E2
        tw, tx, ty, tz = qmul4(iw, ix, iy, iz, cz, 0.0, 0.0, sz)
        rw, rx, ry, rz = qmul4(tw, tx, ty, tz, ew, ex, ey, ez)
        arg = 2.0 * (rx * rw + ry * rz)
        second = math.asin(min(1.0, max(-1.0, arg)))
        a1x, a1y, _ = qrot3(q1[k, 0], q1[k, 1], q1[k, 2], q1[k, 3], j1[0], j1[1], j1[2])
        a2x, a2y, _ = qrot3(q2[k, 0], q2[k, 1], q2[k, 2], q2[k, 3], j2[0], j2[1], j2[2])
        weight[k] = math.sqrt(a1x * a1x + a1y * a1y) * math.sqrt(a2x * a2x + a2y * a2y)
        err[k] = weight[k] * second
        uw, ux, uy, uz = qmul4(iw, ix, iy, iz, dw, 0.0, 0.0, dz)
        gw, gx, gy, gz = qmul4(uw, ux, uy, uz, ew, ex, ey, ez)
        jac[k] = 2.0 * (gx * rw + rx * gw + gy * rz + ry * gz) / math.sqrt(1.0 - arg * arg)


@njit(cache=True)
def fit_delta_2d(q1: np.ndarray, q2: np.ndarray, j1: np.ndarray, j2: np.ndarray,
                 delta: float, steps: int) -> tuple[float, float, float]:
    """Heading offset (rad, in [0, 2 pi)), rating and cost of a window: (m, 4) orientations of
    segments 1 and 2, axis ``j1`` in segment 1, ``j2`` in segment 2; ``steps`` Gauss-Newton
    steps from ``delta``. The cost is the error norm before the last step, as qmt's."""
    b1 = axis_to(np.array([0.0, 0.0, 1.0]), j1)
    b2 = axis_to(np.array([0.0, 1.0, 0.0]), j2)
    m = q1.shape[0]
    err, jac, weight = np.empty(m), np.empty(m), np.empty(m)
    cost = 0.0
    for _ in range(steps):
        _errors(q1, q2, j1, j2, b1, b2, delta, err, jac, weight)
        jj, je, ee = 0.0, 0.0, 0.0
        for k in range(m):
            jj += jac[k] * jac[k]
            je += jac[k] * err[k]
            ee += err[k] * err[k]
        cost = math.sqrt(ee)
        if jj > 0.0:  # qmt's least squares: no step when nothing constrains delta
            delta = delta - je / jj
    delta = delta % (2.0 * math.pi)
    # the rating uses the same weights (axes rotated by the orientations, independent of delta)
    total = 0.0
    for k in range(m):
        total += weight[k] * weight[k]
    return delta, math.sqrt(total / m), cost


@njit(cache=True, inline="always")
def _sandwich(basis: np.ndarray, r: np.ndarray, i: int, j: int) -> float:  # pragma: no cover
    """Entry (i, j) of basis^T r basis, for 3x3 matrices."""
    total = 0.0
    for k in range(3):
        for m in range(3):
            total += basis[k, i] * r[k, m] * basis[m, j]
    return total


@njit(cache=True)
def split_two_axis(q1: np.ndarray, q2: np.ndarray, delta: np.ndarray, basis: np.ndarray,
                   rest_inv: np.ndarray, rot_m: np.ndarray, ax_m: np.ndarray,
                   rot_d: np.ndarray, ax_d: np.ndarray, angle: np.ndarray,
                   q_m: np.ndarray, q_d: np.ndarray) -> None:
    """Both hinge angles (n, 2) rad and quaternions (n, 4) of the middle and distal bodies.

    rel = q1^-1 Rz(delta) q2 (segment 2 to segment 1) = R(u, a) R(w, b) rest; in the basis
    (u, w, u x w) (columns of ``basis``) R(u, a) R(w, b) is Rx(a) Ry(b).
    """
    r = np.empty((3, 3))  # once per call: an allocation per frame costs more than the math
    for k in range(q1.shape[0]):
        c, s = math.cos(0.5 * delta[k]), math.sin(0.5 * delta[k])
        tw, tx, ty, tz = qmul4(c, 0.0, 0.0, s, q2[k, 0], q2[k, 1], q2[k, 2], q2[k, 3])
        rw, rx, ry, rz = qmul4(q1[k, 0], -q1[k, 1], -q1[k, 2], -q1[k, 3], tw, tx, ty, tz)
        w, x, y, z = qmul4(rw, rx, ry, rz, rest_inv[0], rest_inv[1], rest_inv[2], rest_inv[3])
        r[0, 0], r[0, 1], r[0, 2] = 1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (
            x * z + w * y)
        r[1, 0], r[1, 1], r[1, 2] = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (
            y * z - w * x)
        r[2, 0], r[2, 1], r[2, 2] = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (
            x * x + y * y)
        # the four entries of basis^T r basis the angles need (a 3x3 matmul calls BLAS)
        a = math.atan2(_sandwich(basis, r, 2, 1), _sandwich(basis, r, 1, 1))
        b = math.atan2(_sandwich(basis, r, 0, 2), _sandwich(basis, r, 0, 0))
        angle[k, 0], angle[k, 1] = a, b
        ca, sa, cb, sb = math.cos(0.5 * a), math.sin(0.5 * a), math.cos(0.5 * b), math.sin(0.5 * b)
        q_m[k, 0], q_m[k, 1], q_m[k, 2], q_m[k, 3] = qmul4(
            rot_m[0], rot_m[1], rot_m[2], rot_m[3], ca, sa * ax_m[0], sa * ax_m[1], sa * ax_m[2])
        q_d[k, 0], q_d[k, 1], q_d[k, 2], q_d[k, 3] = qmul4(
            rot_d[0], rot_d[1], rot_d[2], rot_d[3], cb, sb * ax_d[0], sb * ax_d[1], sb * ax_d[2])


def warm_up_two_axis() -> None:
    """Compile (or load from the cache) both kernels for the types the node passes."""
    q = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (3, 1))
    axis = np.array([0.0, 1.0, 0.0])
    fit_delta_2d(q, q, axis, np.array([0.0, 0.0, 1.0]), 0.0, 1)
    split_two_axis(q, q, np.zeros(3), np.eye(3), q[0], q[0], axis, q[0], axis, np.empty((3, 2)),
                   np.empty((3, 4)), np.empty((3, 4)))
