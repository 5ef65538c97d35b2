"""Causal joint velocity and acceleration from sampled joint coordinates (Savitzky-Golay).

Over the newest ``window`` samples a quadratic is fitted by least squares to every joint
coordinate and differentiated at the evaluation sample: the window's centre (``centre``:
delay ``(window - 1) / 2`` samples, e.g. 30 ms for 7 samples at 100 Hz, exact for quadratics
and little noise gain) or its newest sample (``newest``: no delay, about 4x the noise). Angles
of hinges are unwrapped first. Rotations (spherical joints, a free root's orientation) are
differentiated in the tangent space of the evaluation sample: ``r_k = log(q_e^-1 q_k)``
(body-frame rotation vectors), whose first and second derivatives at ``r = 0`` are the body
angular velocity and its derivative. Translations a chain state does not carry (prismatic
joints, a free root's position) stay zero.

``Differentiator`` is the streaming form (one frame at a time, no allocation);
``differentiate`` the offline form over a whole series: both give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain

_FREE, _SPH, _HINGE, _PRISM = 0, 1, 2, 3


def sg_coefficients(window: int, at: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(window,) weights of the 1st and 2nd derivative of a quadratic LS fit at sample ``at``."""
    if window < 3:
        raise ValueError(f"window must be >= 3 samples for a quadratic fit, got {window}")
    t = (np.arange(window) - at) * dt
    pinv = np.linalg.pinv(np.stack([np.ones(window), t, t * t], axis=1))
    return np.ascontiguousarray(pinv[1]), np.ascontiguousarray(2.0 * pinv[2])


def q_from_state(chain: Chain, q_rel: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Joint coordinates (T, nq) from chain.state fields q_rel (T, n, 4) and angle (T, n_hinge).

    Hinges take ``angle`` (rad); spherical and free joints the quaternion of the joint
    (``conj(joint rotation) * q_rel``, normalised); translations are zero (chain.state has none).
    """
    q_rel = np.asarray(q_rel)
    angle = np.asarray(angle)
    hinge_of = np.full(chain.n_bodies, -1, np.int64)
    hinge_of[chain.hinge_bodies] = np.arange(len(chain.hinge_bodies))
    ints = np.ascontiguousarray(np.stack([chain.parents, chain.joint_types, chain.q_start,
                                          hinge_of], axis=1).astype(np.int64))
    q = np.zeros((len(q_rel), chain.nq))
    _q_from_state(ints, np.ascontiguousarray(chain.rotations), q_rel, angle, q)
    return q


class StateToQ:
    """``q_from_state`` with the chain's arrays packed once (per-frame use in the node)."""

    def __init__(self, chain: Chain) -> None:
        hinge_of = np.full(chain.n_bodies, -1, np.int64)
        hinge_of[chain.hinge_bodies] = np.arange(len(chain.hinge_bodies))
        self.ints = np.ascontiguousarray(np.stack(
            [chain.parents, chain.joint_types, chain.q_start, hinge_of], axis=1).astype(np.int64))
        self.rot = np.ascontiguousarray(chain.rotations)
        self.nq = chain.nq

    def __call__(self, q_rel: np.ndarray, angle: np.ndarray) -> np.ndarray:
        """(T, nq) coordinates of T chain.state samples."""
        q = np.zeros((len(q_rel), self.nq))
        _q_from_state(self.ints, self.rot, q_rel, angle, q)
        return q


@njit(cache=True)
def _q_from_state(ints, rot, q_rel, angle, q):
    for k in range(q_rel.shape[0]):
        for i in range(ints.shape[0]):
            t, s, h = ints[i, 1], ints[i, 2], ints[i, 3]
            if t == _HINGE:
                q[k, s] = angle[k, h]
            elif t == _FREE or t == _SPH:
                o = s + 3 if t == _FREE else s
                aw, ax, ay, az = rot[i, 0], -rot[i, 1], -rot[i, 2], -rot[i, 3]
                bw, bx, by, bz = (float(q_rel[k, i, 0]), float(q_rel[k, i, 1]),
                                  float(q_rel[k, i, 2]), float(q_rel[k, i, 3]))
                w = aw * bw - ax * bx - ay * by - az * bz
                x = aw * bx + ax * bw + ay * bz - az * by
                y = aw * by - ax * bz + ay * bw + az * bx
                z = aw * bz + ax * by - ay * bx + az * bw
                nrm = math.sqrt(w * w + x * x + y * y + z * z)
                q[k, o], q[k, o + 1], q[k, o + 2], q[k, o + 3] = w / nrm, x / nrm, y / nrm, z / nrm


@njit(cache=True, inline="always")
def _rotvec_between(aw, ax, ay, az, bw, bx, by, bz):
    """Rotation vector of conj(a) * b (unit quaternions), shortest way."""
    w = aw * bw + ax * bx + ay * by + az * bz
    x = aw * bx - ax * bw - ay * bz + az * by
    y = aw * by + ax * bz - ay * bw - az * bx
    z = aw * bz - ax * by + ay * bx - az * bw
    if w < 0.0:
        w, x, y, z = -w, -x, -y, -z
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return 2.0 * x, 2.0 * y, 2.0 * z
    k = 2.0 * math.atan2(s, w) / s
    return k * x, k * y, k * z


@njit(cache=True)
def derivatives_into(ints: np.ndarray, ring: np.ndarray, oldest: int, at: int, c1: np.ndarray,
                     c2: np.ndarray, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> None:
    """q, qd, qdd at window sample ``at`` from ring (W, nq) whose oldest row is ``oldest``.

    ints: (n, 4) int64 rows (parent, joint type, q start, qd start). Hinge angles in the ring
    must be unwrapped; translations are left at zero.
    """
    w = ring.shape[0]
    e = (oldest + at) % w
    for c in range(ring.shape[1]):
        q[c] = ring[e, c]
    for c in range(qd.shape[0]):
        qd[c] = 0.0
        qdd[c] = 0.0
    for i in range(ints.shape[0]):
        t, s, d = ints[i, 1], ints[i, 2], ints[i, 3]
        if t == _HINGE:
            v = 0.0
            a = 0.0
            for k in range(w):
                y = ring[(oldest + k) % w, s]
                v += c1[k] * y
                a += c2[k] * y
            qd[d], qdd[d] = v, a
        elif t == _FREE or t == _SPH:
            o = s + 3 if t == _FREE else s
            u = d + 3 if t == _FREE else d
            rw, rx, ry, rz = ring[e, o], ring[e, o + 1], ring[e, o + 2], ring[e, o + 3]
            for k in range(w):
                r = (oldest + k) % w
                vx, vy, vz = _rotvec_between(rw, rx, ry, rz, ring[r, o], ring[r, o + 1],
                                             ring[r, o + 2], ring[r, o + 3])
                qd[u] += c1[k] * vx
                qd[u + 1] += c1[k] * vy
                qd[u + 2] += c1[k] * vz
                qdd[u] += c2[k] * vx
                qdd[u + 1] += c2[k] * vy
                qdd[u + 2] += c2[k] * vz


class Differentiator:
    """Streaming joint velocities and accelerations of one chain; see the module docstring.

    Args:
        chain: the chain whose coordinates (``q_from_state`` layout) are pushed.
        rate_hz: sample rate of the pushed frames.
        window: samples per fit (>= 3). evaluate: "centre" or "newest".
    """

    def __init__(self, chain: Chain, rate_hz: float, window: int = 7,
                 evaluate: str = "centre") -> None:
        if evaluate not in ("centre", "newest"):
            raise ValueError(f"evaluate must be 'centre' or 'newest', got {evaluate!r}")
        self.window, self.rate_hz = int(window), float(rate_hz)
        self.at = (self.window - 1) // 2 if evaluate == "centre" else self.window - 1
        self.delay_samples = self.window - 1 - self.at
        self.c1, self.c2 = sg_coefficients(self.window, self.at, 1.0 / self.rate_hz)
        self.ints = np.ascontiguousarray(np.stack(
            [chain.parents, chain.joint_types, chain.q_start, chain.qd_start], axis=1
        ).astype(np.int64))
        self.hinge_cols = np.array([chain.q_start[i] for i in chain.hinge_bodies], dtype=np.int64)
        self.ring = np.zeros((self.window, chain.nq))
        self.q, self.qd, self.qdd = np.zeros(chain.nq), np.zeros(chain.nqd), np.zeros(chain.nqd)
        self.count = 0  # frames pushed since the last reset

    @property
    def delay_s(self) -> float:
        """Delay of the estimates behind the newest frame, s."""
        return self.delay_samples / self.rate_hz

    def reset(self) -> None:
        """Forget the window (after a gap): the next window - 1 frames give no estimate."""
        self.count = 0

    def push(self, q: np.ndarray) -> bool:
        """Add one frame q (nq,); True when ``self.q``, ``qd``, ``qdd`` hold a new estimate."""
        w = self.window
        row = self.count % w
        if self.count and len(self.hinge_cols):  # unwrap hinge angles against the last frame
            prev = self.ring[(self.count - 1) % w, self.hinge_cols]
            new = q[self.hinge_cols]
            self.ring[row] = q
            self.ring[row, self.hinge_cols] = new - 2 * np.pi * np.round((new - prev) / (2 * np.pi))
        else:
            self.ring[row] = q
        self.count += 1
        if self.count < w:
            return False
        derivatives_into(self.ints, self.ring, self.count % w, self.at, self.c1, self.c2,
                         self.q, self.qd, self.qdd)
        if len(self.hinge_cols):
            self.q[self.hinge_cols] = _wrap(self.q[self.hinge_cols])
        return True


def differentiate(chain: Chain, q: np.ndarray, rate_hz: float, window: int = 7,
                  evaluate: str = "centre") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Offline: q (T, nq) -> (q, qd, qdd) of frames first..first+len-1, and ``first``.

    Frame ``first + k`` of the input is the evaluation sample of estimate ``k``; the
    streaming :class:`Differentiator` gives the same values one frame at a time.
    """
    d = Differentiator(chain, rate_hz, window, evaluate)
    q = np.asarray(q, dtype=np.float64)
    unwrapped = q.copy()
    if len(d.hinge_cols):
        unwrapped[:, d.hinge_cols] = np.unwrap(q[:, d.hinge_cols], axis=0)
    n_out = max(len(q) - d.window + 1, 0)
    qs, qds, qdds = np.zeros((n_out, chain.nq)), np.zeros((n_out, chain.nqd)), np.zeros(
        (n_out, chain.nqd))
    for k in range(n_out):
        derivatives_into(d.ints, unwrapped[k:k + d.window], 0, d.at, d.c1, d.c2, qs[k], qds[k],
                         qdds[k])
    if len(d.hinge_cols):
        qs[:, d.hinge_cols] = _wrap(qs[:, d.hinge_cols])
    return qs, qds, qdds, d.at


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles (rad) into [-pi, pi)."""
    return np.remainder(angle + np.pi, 2 * np.pi) - np.pi
