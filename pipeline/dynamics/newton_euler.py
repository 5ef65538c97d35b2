"""Recursive Newton-Euler inverse dynamics over a chain, O(number of bodies) (numba kernels).

Frames and units: body quantities are in body coordinates about the body origin (the joint);
SI units (kg, m, s, N, N m). Coordinates follow ``pipeline.kinematics`` (``Chain.q_start`` /
``Chain.qd_start`` layout):

- hinge: angle rad, rate rad/s, torque N m about the joint axis;
- prismatic: displacement m, rate m/s, force N along the axis;
- spherical: quaternion w,x,y,z; velocity = angular rate of the body relative to its parent
  in body coordinates (rad/s, 3), acceleration its time derivative; torque (3,) N m, body frame;
- free: position (3, m, joint frame) and quaternion; velocity = the position's time
  derivative (joint frame) then the body angular rate relative to the joint frame (body
  coordinates); generalised force = force (joint frame, N) then moment (body frame, N m);
- frozen: no coordinates.

Outward pass: angular velocity and acceleration and the linear acceleration of every body
origin, starting from the earth accelerating at ``-gravity`` (so gravity needs no separate
term). Inward pass: each body's net wrench ``f = m a_c``, ``n = I_c alpha + w x I_c w + c x f``
minus the external wrenches acting on it, plus what its children pass on, gives the wrench
its joint transmits; projecting that on the joint's motion gives the generalised force. The
wrench left at a root is the residual of Zell, Rosenhahn and Wandt (2020): zero when the
motion and the external forces agree (a floating base), else what the earth must supply.

Everything is written into preallocated arrays: one frame allocates nothing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.quaternion import cross3

_FREE, _SPH, _HINGE, _PRISM = 0, 1, 2, 3

# columns of the ``ints`` rows and of the ``params`` rows (see InverseDynamics)
I_PARENT, I_TYPE, I_Q, I_QD = 0, 1, 2, 3
N_WORK = 33  # per body: R (9), Rw (9), r (3), w (3), wd (3), F (3), N (3)


@njit(cache=True, inline="always")
def _quat_matrix(w, x, y, z, out, o):
    """Rotation matrix of the quaternion (normalised here) into out[o:o+9], row-major."""
    s = 1.0 / math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w * s, x * s, y * s, z * s
    out[o + 0] = 1 - 2 * (y * y + z * z)
    out[o + 1] = 2 * (x * y - w * z)
    out[o + 2] = 2 * (x * z + w * y)
    out[o + 3] = 2 * (x * y + w * z)
    out[o + 4] = 1 - 2 * (x * x + z * z)
    out[o + 5] = 2 * (y * z - w * x)
    out[o + 6] = 2 * (x * z - w * y)
    out[o + 7] = 2 * (y * z + w * x)
    out[o + 8] = 1 - 2 * (x * x + y * y)


@njit(cache=True, inline="always")
def _mul33(a, ao, b, bo, out, oo):
    """out[oo:oo+9] = A @ B for row-major 3x3 blocks (out must not alias a or b)."""
    for r in range(3):
        for c in range(3):
            out[oo + 3 * r + c] = (a[ao + 3 * r] * b[bo + c] + a[ao + 3 * r + 1] * b[bo + 3 + c]
                                   + a[ao + 3 * r + 2] * b[bo + 6 + c])


@njit(cache=True, inline="always")
def _mv(m, o, x, y, z):
    """M @ v for the row-major 3x3 block m[o:o+9]."""
    return (m[o] * x + m[o + 1] * y + m[o + 2] * z, m[o + 3] * x + m[o + 4] * y + m[o + 5] * z,
            m[o + 6] * x + m[o + 7] * y + m[o + 8] * z)


@njit(cache=True, inline="always")
def _mtv(m, o, x, y, z):
    """M^T @ v for the row-major 3x3 block m[o:o+9]."""
    return (m[o] * x + m[o + 3] * y + m[o + 6] * z, m[o + 1] * x + m[o + 4] * y + m[o + 7] * z,
            m[o + 2] * x + m[o + 5] * y + m[o + 8] * z)


@njit(cache=True)
def rnea_into(ints: np.ndarray, params: np.ndarray, inert: np.ndarray, gravity: np.ndarray,
              q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, ext_body: np.ndarray,
              ext: np.ndarray, tau: np.ndarray, residual: np.ndarray, work: np.ndarray) -> None:
    """One frame of inverse dynamics; writes tau (nqd,) and residual (6,); allocates nothing.

    Args:
        ints: (n, 4) int64 rows (parent, joint type, q start, qd start); parents first.
        params: (n, 10) float64 rows (offset m (3), joint rotation w,x,y,z (4), axis (3)).
        inert: (n, 10) float64 rows (mass kg, com m (3), Ixx Iyy Izz Ixy Ixz Iyz kg m^2 at CoM).
        gravity: (3,) m/s^2, earth frame (e.g. 0, 0, -9.81).
        q (nq,), qd (nqd,), qdd (nqd,): joint coordinates, velocities, accelerations.
        ext_body: (k,) int64 body of each external wrench; ext: (k, 9) float64 rows
            (force N, earth frame (3); moment N m about the point, earth frame (3);
            point of application m, body frame (3)).
        tau: (nqd,) out, generalised forces. residual: (6,) out, the wrench (force N, moment
            N m about its origin, earth frame) the earth applies to body 0, a root.
        work: (n, N_WORK) float64 scratch; after the call row i holds the joint wrench of body
            i (F at 27:30, N at 30:33, body frame, about its origin).
    """
    n = ints.shape[0]
    for i in range(n):
        p, t, s, d = ints[i, 0], ints[i, 1], ints[i, 2], ints[i, 3]
        wk = work[i]
        ox, oy, oz = params[i, 0], params[i, 1], params[i, 2]
        rw, rx, ry, rz = params[i, 3], params[i, 4], params[i, 5], params[i, 6]
        ax, ay, az = params[i, 7], params[i, 8], params[i, 9]
        # joint rotation into wk[18:27] (used as scratch), then R = R_J R_q into wk[0:9]
        _quat_matrix(rw, rx, ry, rz, wk, 18)
        ux = uy = uz = 0.0  # relative angular velocity, body frame
        udx = udy = udz = 0.0  # its derivative
        rdx = rdy = rdz = 0.0  # d/dt of the origin offset, parent frame
        rddx = rddy = rddz = 0.0
        r0, r1, r2 = ox, oy, oz
        if t == _FREE or t == _SPH or t == _HINGE:
            if t == _HINGE:
                h = 0.5 * q[s]
                sn = math.sin(h)
                _quat_matrix(math.cos(h), ax * sn, ay * sn, az * sn, wk, 9)
                ux, uy, uz = ax * qd[d], ay * qd[d], az * qd[d]
                udx, udy, udz = ax * qdd[d], ay * qdd[d], az * qdd[d]
            else:
                k = s + 3 if t == _FREE else s
                e = d + 3 if t == _FREE else d
                _quat_matrix(q[k], q[k + 1], q[k + 2], q[k + 3], wk, 9)
                ux, uy, uz = qd[e], qd[e + 1], qd[e + 2]
                udx, udy, udz = qdd[e], qdd[e + 1], qdd[e + 2]
                if t == _FREE:
                    dx, dy, dz = _mv(wk, 18, q[s], q[s + 1], q[s + 2])
                    r0, r1, r2 = ox + dx, oy + dy, oz + dz
                    rdx, rdy, rdz = _mv(wk, 18, qd[d], qd[d + 1], qd[d + 2])
                    rddx, rddy, rddz = _mv(wk, 18, qdd[d], qdd[d + 1], qdd[d + 2])
            _mul33(wk, 18, wk, 9, wk, 0)
        else:
            for c in range(9):
                wk[c] = wk[18 + c]
            if t == _PRISM:
                dx, dy, dz = _mv(wk, 18, ax, ay, az)
                r0, r1, r2 = ox + dx * q[s], oy + dy * q[s], oz + dz * q[s]
                rdx, rdy, rdz = dx * qd[d], dy * qd[d], dz * qd[d]
                rddx, rddy, rddz = dx * qdd[d], dy * qdd[d], dz * qdd[d]
        wk[18], wk[19], wk[20] = r0, r1, r2
        if p < 0:
            for c in range(9):
                wk[9 + c] = wk[c]
            wpx = wpy = wpz = 0.0
            wdpx = wdpy = wdpz = 0.0
            apx, apy, apz = -gravity[0], -gravity[1], -gravity[2]
        else:
            wp = work[p]
            _mul33(wp, 9, wk, 0, wk, 9)
            wpx, wpy, wpz = wp[21], wp[22], wp[23]
            wdpx, wdpy, wdpz = wp[24], wp[25], wp[26]
            apx, apy, apz = wp[27], wp[28], wp[29]
        # parent-frame acceleration of this origin: a_p + wd x r + w x (w x r) + 2 w x rd + rdd
        c1 = cross3(wdpx, wdpy, wdpz, r0, r1, r2)
        c2 = cross3(wpx, wpy, wpz, r0, r1, r2)
        c3 = cross3(wpx, wpy, wpz, c2[0], c2[1], c2[2])
        c4 = cross3(wpx, wpy, wpz, rdx, rdy, rdz)
        a0 = apx + c1[0] + c3[0] + 2.0 * c4[0] + rddx
        a1 = apy + c1[1] + c3[1] + 2.0 * c4[1] + rddy
        a2 = apz + c1[2] + c3[2] + 2.0 * c4[2] + rddz
        bx, by, bz = _mtv(wk, 0, wpx, wpy, wpz)  # parent's rate in body coordinates
        bdx, bdy, bdz = _mtv(wk, 0, wdpx, wdpy, wdpz)
        c5 = cross3(bx, by, bz, ux, uy, uz)
        wk[21], wk[22], wk[23] = bx + ux, by + uy, bz + uz
        wk[24], wk[25], wk[26] = bdx + udx + c5[0], bdy + udy + c5[1], bdz + udz + c5[2]
        wk[27], wk[28], wk[29] = _mtv(wk, 0, a0, a1, a2)
    # each body's own wrench about its origin, body frame (replaces a: no longer needed)
    for i in range(n):
        wk = work[i]
        m = inert[i, 0]
        cx, cy, cz = inert[i, 1], inert[i, 2], inert[i, 3]
        wx, wy, wz = wk[21], wk[22], wk[23]
        wdx, wdy, wdz = wk[24], wk[25], wk[26]
        e1 = cross3(wdx, wdy, wdz, cx, cy, cz)
        e2 = cross3(wx, wy, wz, cx, cy, cz)
        e3 = cross3(wx, wy, wz, e2[0], e2[1], e2[2])
        fx = m * (wk[27] + e1[0] + e3[0])
        fy = m * (wk[28] + e1[1] + e3[1])
        fz = m * (wk[29] + e1[2] + e3[2])
        ixx, iyy, izz = inert[i, 4], inert[i, 5], inert[i, 6]
        ixy, ixz, iyz = inert[i, 7], inert[i, 8], inert[i, 9]
        lx = ixx * wx + ixy * wy + ixz * wz
        ly = ixy * wx + iyy * wy + iyz * wz
        lz = ixz * wx + iyz * wy + izz * wz
        g = cross3(wx, wy, wz, lx, ly, lz)
        h = cross3(cx, cy, cz, fx, fy, fz)
        nx = ixx * wdx + ixy * wdy + ixz * wdz + g[0] + h[0]
        ny = ixy * wdx + iyy * wdy + iyz * wdz + g[1] + h[1]
        nz = ixz * wdx + iyz * wdy + izz * wdz + g[2] + h[2]
        wk[27], wk[28], wk[29] = fx, fy, fz  # the children's wrenches are added by _inward
        wk[30], wk[31], wk[32] = nx, ny, nz
    _inward(ints, params, ext_body, ext, tau, residual, work)


@njit(cache=True)
def _inward(ints, params, ext_body, ext, tau, residual, work):
    """Subtract external wrenches, pass joint wrenches to the parents, project on the joints."""
    n = ints.shape[0]
    for k in range(ext_body.shape[0]):
        b = ext_body[k]
        wk = work[b]
        fx, fy, fz = _mtv(wk, 9, ext[k, 0], ext[k, 1], ext[k, 2])
        mx, my, mz = _mtv(wk, 9, ext[k, 3], ext[k, 4], ext[k, 5])
        pm = cross3(ext[k, 6], ext[k, 7], ext[k, 8], fx, fy, fz)
        wk[27] -= fx
        wk[28] -= fy
        wk[29] -= fz
        wk[30] -= mx + pm[0]
        wk[31] -= my + pm[1]
        wk[32] -= mz + pm[2]
    for i in range(n - 1, -1, -1):
        wk = work[i]
        p, t, d = ints[i, 0], ints[i, 1], ints[i, 3]
        fx, fy, fz = wk[27], wk[28], wk[29]
        nx, ny, nz = wk[30], wk[31], wk[32]
        ax, ay, az = params[i, 7], params[i, 8], params[i, 9]
        if t == _HINGE:
            tau[d] = ax * nx + ay * ny + az * nz
        elif t == _PRISM:
            tau[d] = ax * fx + ay * fy + az * fz
        elif t == _SPH:
            tau[d], tau[d + 1], tau[d + 2] = nx, ny, nz
        elif t == _FREE:  # force in the joint frame: R_q F = R_J^T R F
            gx, gy, gz = _mv(wk, 0, fx, fy, fz)
            rw, rx, ry, rz = params[i, 3], params[i, 4], params[i, 5], params[i, 6]
            s = 1.0 / math.sqrt(rw * rw + rx * rx + ry * ry + rz * rz)
            rw, rx, ry, rz = rw * s, -rx * s, -ry * s, -rz * s  # conjugate: parent -> joint
            tx = 2.0 * (ry * gz - rz * gy)
            ty = 2.0 * (rz * gx - rx * gz)
            tz = 2.0 * (rx * gy - ry * gx)
            tau[d] = gx + rw * tx + ry * tz - rz * ty
            tau[d + 1] = gy + rw * ty + rz * tx - rx * tz
            tau[d + 2] = gz + rw * tz + rx * ty - ry * tx
            tau[d + 3], tau[d + 4], tau[d + 5] = nx, ny, nz
        if p >= 0:
            gx, gy, gz = _mv(wk, 0, fx, fy, fz)
            hx, hy, hz = _mv(wk, 0, nx, ny, nz)
            c = cross3(wk[18], wk[19], wk[20], gx, gy, gz)
            wp = work[p]
            wp[27] += gx
            wp[28] += gy
            wp[29] += gz
            wp[30] += hx + c[0]
            wp[31] += hy + c[1]
            wp[32] += hz + c[2]
        elif i == 0:  # body 0 is a root (parents come first)
            residual[0], residual[1], residual[2] = _mv(wk, 9, fx, fy, fz)
            residual[3], residual[4], residual[5] = _mv(wk, 9, nx, ny, nz)


@njit(cache=True)
def rnea_batch(ints: np.ndarray, params: np.ndarray, inert: np.ndarray, gravity: np.ndarray,
               q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, ext_body: np.ndarray,
               ext: np.ndarray, tau: np.ndarray, residual: np.ndarray, work: np.ndarray) -> None:
    """rnea_into over time: q (T, nq), qd/qdd/tau (T, nqd), ext (T, k, 9), residual (T, 6)."""
    for k in range(q.shape[0]):
        rnea_into(ints, params, inert, gravity, q[k], qd[k], qdd[k], ext_body, ext[k], tau[k],
                  residual[k], work)
