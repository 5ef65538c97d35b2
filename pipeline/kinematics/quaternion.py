"""Unit quaternion math, ``w, x, y, z``: numba kernels (``q*``) and numpy twins (``np_q*``).

The numba functions take and return (4,) / (3,) float64 arrays and are meant to be called
from other jitted code; the numpy twins broadcast over leading dimensions (..., 4) and are
the references the tests compare against. A quaternion ``q`` maps vectors from the rotated
(body) frame into the reference frame: ``v_ref = q * v_body * conj(q)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---------------------------------------------------------------- numba kernels


@njit(cache=True, inline="always")
def qmul4(aw, ax, ay, az, bw, bx, by, bz):
    """Hamilton product a*b on scalars; returns a (w, x, y, z) tuple."""
    return (aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw)


@njit(cache=True, inline="always")
def cross3(ax, ay, az, bx, by, bz):
    """Cross product a x b of two 3-vectors on scalars; returns an (x, y, z) tuple."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@njit(cache=True, inline="always")
def qrot3(w, x, y, z, vx, vy, vz):
    """Rotate vector v by unit quaternion (w, x, y, z) on scalars; returns an (x, y, z) tuple."""
    tx = 2.0 * (y * vz - z * vy)
    ty = 2.0 * (z * vx - x * vz)
    tz = 2.0 * (x * vy - y * vx)
    return (vx + w * tx + y * tz - z * ty,
            vy + w * ty + z * tx - x * tz,
            vz + w * tz + x * ty - y * tx)


@njit(cache=True)
def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b of (4,) float64 quaternions."""
    w, x, y, z = qmul4(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3])
    return np.array((w, x, y, z))


@njit(cache=True)
def qconj(q: np.ndarray) -> np.ndarray:
    """Conjugate (inverse for unit norm) of a (4,) quaternion."""
    return np.array((q[0], -q[1], -q[2], -q[3]))


@njit(cache=True)
def qrotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (3,) vector v from the body frame into the reference frame by unit q."""
    x, y, z = qrot3(q[0], q[1], q[2], q[3], v[0], v[1], v[2])
    return np.array((x, y, z))


@njit(cache=True)
def qfrom_axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Quaternion rotating by ``angle`` (rad) about the unit (3,) ``axis``."""
    s = math.sin(0.5 * angle)
    return np.array((math.cos(0.5 * angle), axis[0] * s, axis[1] * s, axis[2] * s))


@njit(cache=True)
def qfrom_rotvec(r: np.ndarray) -> np.ndarray:
    """Quaternion of rotation vector r (3,) in rad (exponential map)."""
    a = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    if a < 1e-12:
        return np.array((1.0, 0.5 * r[0], 0.5 * r[1], 0.5 * r[2]))
    s = math.sin(0.5 * a) / a
    return np.array((math.cos(0.5 * a), r[0] * s, r[1] * s, r[2] * s))


@njit(cache=True)
def qto_matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix of unit q (body to reference)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return np.array((
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))))


@njit(cache=True)
def qnormalize(q: np.ndarray) -> np.ndarray:
    """q / |q|; the zero quaternion maps to identity."""
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if n == 0.0:
        return np.array((1.0, 0.0, 0.0, 0.0))
    return q / n


@njit(cache=True)
def qangle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad, 0..pi) of the rotation between unit quaternions a and b."""
    d = abs(a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3])
    return 2.0 * math.acos(min(d, 1.0))


@njit(cache=True)
def qintegrate(q: np.ndarray, omega: np.ndarray, dt: float) -> np.ndarray:
    """Propagate unit q by constant body rate omega (3,) rad/s over dt s: q * exp(omega dt)."""
    r = omega * dt
    dq = qfrom_rotvec(r)
    return qnormalize(qmul(q, dq))


# ---------------------------------------------------------------- numpy twins


def np_qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b; (..., 4) float64."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def np_qconj(q: np.ndarray) -> np.ndarray:
    """Conjugate; (..., 4)."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def np_qrotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate v (..., 3) by unit q (..., 4) from body into reference frame."""
    v = np.asarray(v, dtype=np.float64)
    vq = np.concatenate([np.zeros(v.shape[:-1] + (1,)), v], axis=-1)
    return np_qmul(np_qmul(q, vq), np_qconj(q))[..., 1:]


def np_qfrom_axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) from unit axes (..., 3) and angles (...) in rad."""
    half = 0.5 * np.asarray(angle, dtype=np.float64)[..., None]
    return np.concatenate([np.cos(half), np.asarray(axis) * np.sin(half)], axis=-1)


def np_qfrom_rotvec(r: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) from rotation vectors (..., 3) in rad."""
    r = np.asarray(r, dtype=np.float64)
    a = np.linalg.norm(r, axis=-1, keepdims=True)
    s = np.where(a < 1e-12, 0.5, np.sin(0.5 * a) / np.where(a < 1e-12, 1.0, a))
    return np.concatenate([np.cos(0.5 * a), r * s], axis=-1)


def np_qto_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) in rad (angle in 0..pi) of unit quaternions (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q[..., :1] < 0, -q, q)
    n = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    ang = 2.0 * np.arctan2(n, q[..., :1])
    scale = np.where(n < 1e-12, 2.0, ang / np.where(n < 1e-12, 1.0, n))
    return q[..., 1:] * scale


def np_qto_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4)."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def np_qnormalize(q: np.ndarray) -> np.ndarray:
    """q / |q| over (..., 4); zero rows become identity."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    ident = np.zeros_like(q)
    ident[..., 0] = 1.0
    return np.where(n == 0.0, ident, q / np.where(n == 0.0, 1.0, n))


def np_qangle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle (...) in rad between unit quaternions (..., 4)."""
    d = np.abs(np.sum(np.asarray(a) * np.asarray(b), axis=-1))
    return 2.0 * np.arccos(np.minimum(d, 1.0))


def np_qintegrate(q: np.ndarray, omega: np.ndarray, dt: float) -> np.ndarray:
    """Propagate unit q (..., 4) by constant body rate omega (..., 3) rad/s over dt s."""
    return np_qnormalize(np_qmul(q, np_qfrom_rotvec(np.asarray(omega) * dt)))


def heading_free(q: np.ndarray) -> np.ndarray:
    """Inclination part (..., 4) of body->earth q (..., 4): q = twist_z * swing; swing, w >= 0."""
    q = np_qnormalize(q)
    twist = np.zeros_like(q)
    twist[..., 0], twist[..., 3] = q[..., 0], q[..., 3]
    swing = np_qmul(np_qconj(np_qnormalize(twist)), q)
    swing[..., 3] = 0.0  # exactly zero in theory; remove round-off
    swing = np_qnormalize(swing)
    return np.where(swing[..., :1] < 0, -swing, swing)


def up_to_heading_free(up: np.ndarray) -> np.ndarray:
    """Heading-free body->earth q (..., 4), w >= 0, from earth +z seen in the body (..., 3).

    The shortest rotation taking ``up`` to +z: what ``heading_free`` gives for any q with that
    up vector; exactly upside down (no shortest rotation) it is 180 deg about body x. A zero
    vector gives the identity.
    """
    u = np.asarray(up, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-300)
    q = np.stack([1.0 + u[..., 2], u[..., 1], -u[..., 0], np.zeros_like(u[..., 0])], -1)
    flip = np.sum(q * q, axis=-1, keepdims=True) < 1e-24
    return np_qnormalize(np.where(flip, [0.0, 1.0, 0.0, 0.0], q))
