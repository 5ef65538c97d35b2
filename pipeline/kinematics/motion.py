"""Random smooth chain motion: keyframed joint and root trajectories, reproducible by seed.

Every scalar channel (hinge angle, prismatic displacement, rotation-vector component of a
spherical joint, root position and yaw/pitch/roll) follows random keyframes with random
durations (log-uniform, so slow and fast phases mix) and random rests where it holds still.
Keyframes are joined by septic Hermite segments with zero acceleration and jerk at the knots
and PCHIP-like knot velocities (harmonic mean of the neighbouring slopes, zero at extrema and
rests): C3-smooth, analytic derivatives, and no overshoot, so every channel stays inside its
keyframe range (and therefore inside the joint limits).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.quaternion import np_qconj, np_qfrom_rotvec, np_qmul, np_qto_rotvec

log = logging.getLogger("imuflow.motion")


@dataclass(frozen=True)
class MotionSettings:
    """Generator parameters; durations in s, angles in rad, lengths in m."""

    seg_min_s: float = 0.2           # shortest keyframe-to-keyframe move
    seg_max_s: float = 2.5           # longest move
    rest_prob: float = 0.2           # probability that a move is followed by a rest
    rest_min_s: float = 0.2
    rest_max_s: float = 2.0
    amplitude_min: float = 0.1       # a move covers this..1 fraction of the channel range
    hinge_range_rad: float = math.pi   # +- range for a hinge without limits
    spherical_range_rad: float = 0.8   # +- per rotation-vector component without limits
    prismatic_range_m: float = 0.1     # +- range for a prismatic joint without limits
    root_tilt_rad: float = 1.2       # +- pitch and roll of a free joint (inclination)
    root_yaw_rad: float = math.pi    # +- yaw of a free joint
    root_translation_m: float = 0.3  # +- translation of a free joint per axis
    max_rate_rad_s: float = 5.0      # cap on mean angular speed of a move (peak is 2.2x)
    max_acc_rad_s2: float = 60.0     # cap on peak angular acceleration of a move
    max_rate_m_s: float = 0.8        # cap on mean translation speed of a move
    max_acc_m_s2: float = 6.0        # cap on peak translational acceleration of a move
    # > 0: every channel starts at its neutral value (0, or the range's nearest end) and holds
    # it this long before its random moves: the chain's zero pose, still, as a person stands
    # in the calibration pose when tracking starts; 0: random start values
    start_still_s: float = 0.0


class Channel:
    """One scalar trajectory: knots t (K,) s, values p (K,), knot velocities v (K,)."""

    def __init__(self, t: np.ndarray, p: np.ndarray) -> None:
        self.t, self.p = t, p
        dt = np.diff(t)
        sec = np.diff(p) / dt
        v = np.zeros_like(p)
        a, b = sec[:-1], sec[1:]
        same = (a * b) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            hm = np.where(same, 2.0 * a * b / (a + b), 0.0)  # harmonic mean, 0 at extrema/rests
        v[1:-1] = hm
        self.v = v

    def __call__(self, t: np.ndarray, deriv: int = 0) -> np.ndarray:
        """Value (deriv 0), velocity (1) or acceleration (2) at times t (N,) s."""
        if deriv not in (0, 1, 2):
            raise ValueError(f"deriv must be 0, 1 or 2, got {deriv}")
        t = np.ascontiguousarray(t, dtype=np.float64)
        out = np.empty_like(t)
        _septic_eval(self.t, self.p, self.v, t, deriv, out)
        return out


@njit(cache=True)
def _septic_eval(tk: np.ndarray, pk: np.ndarray, vk: np.ndarray, t: np.ndarray, deriv: int,
                 out: np.ndarray) -> None:
    """Septic Hermite (zero knot acc/jerk) at times t (N,) into out (N,); held outside the knots."""
    last = len(tk) - 2
    for n in range(t.shape[0]):
        k = min(max(np.searchsorted(tk, t[n], side="right") - 1, 0), last)
        h = tk[k + 1] - tk[k]
        s = min(max((t[n] - tk[k]) / h, 0.0), 1.0)
        dp, m0, m1 = pk[k + 1] - pk[k], vk[k] * h, vk[k + 1] * h
        s2 = s * s
        s3 = s2 * s
        if deriv == 0:
            s4 = s2 * s2
            out[n] = (pk[k] + dp * s4 * (35 + s * (-84 + s * (70 - 20 * s)))
                      + m0 * (s + s4 * (-20 + s * (45 + s * (-36 + 10 * s))))
                      + m1 * s4 * (-15 + s * (39 + s * (-34 + 10 * s))))
        elif deriv == 1:
            out[n] = (dp * s3 * (140 + s * (-420 + s * (420 - 140 * s)))
                      + m0 * (1 + s3 * (-80 + s * (225 + s * (-216 + 70 * s))))
                      + m1 * s3 * (-60 + s * (195 + s * (-204 + 70 * s)))) / h
        else:
            out[n] = (dp * s2 * (420 + s * (-1680 + s * (2100 - 840 * s)))
                      + m0 * s2 * (-240 + s * (900 + s * (-1080 + 420 * s)))
                      + m1 * s2 * (-180 + s * (780 + s * (-1020 + 420 * s)))) / (h * h)


def random_channel(rng: np.random.Generator, lo: float, hi: float, duration_s: float,
                   s: MotionSettings, max_rate: float, max_acc: float) -> Channel:
    """Random keyframe channel within [lo, hi] over 0..duration_s; moves capped in speed and acceleration."""
    span = hi - lo
    t, p = [0.0], [float(rng.uniform(lo, hi))]  # drawn either way: same random stream
    if s.start_still_s > 0:
        p[0] = min(max(0.0, lo), hi)
        t.append(s.start_still_s)
        p.append(p[0])
    log_lo, log_hi = math.log(s.seg_min_s), math.log(s.seg_max_s)
    while t[-1] <= duration_s:  # random numbers drawn in chunks: this loop is hot in training
        n = 64
        u_dt, u_amp, u_sign = rng.random(n), rng.random(n), rng.random(n)
        u_rest, u_rest_dt = rng.random(n), rng.random(n)
        for k in range(n):
            if t[-1] > duration_s:
                break
            dt = math.exp(log_lo + (log_hi - log_lo) * u_dt[k])
            amp = span * (s.amplitude_min + (1.0 - s.amplitude_min) * u_amp[k])
            step = amp if u_sign[k] < 0.5 else -amp
            target = min(max(p[-1] + step, lo), hi)
            if abs(target - p[-1]) < 0.5 * amp:  # clipped at a limit: go the other way
                target = min(max(p[-1] - step, lo), hi)
            dist = abs(target - p[-1])
            dt = max(dt, dist / max_rate, math.sqrt(7.52 * dist / max_acc))  # septic peak acc 7.51 d/dt^2
            t.append(t[-1] + dt)
            p.append(target)
            if u_rest[k] < s.rest_prob:
                t.append(t[-1] + s.rest_min_s + (s.rest_max_s - s.rest_min_s) * u_rest_dt[k])
                p.append(target)
    return Channel(np.asarray(t), np.asarray(p))


@dataclass(frozen=True)
class Motion:
    """A smooth chain trajectory; ``q(t)`` gives (N, nq) coordinates in the chain's layout."""

    chain: Chain
    channels: tuple[tuple[Channel, ...], ...]  # per body: free 6 (pos xyz, yaw, pitch, roll), sph 3, hinge/prism 1
    duration_s: float

    def q(self, t: np.ndarray) -> np.ndarray:
        """Joint coordinates (N, nq) float64 at times t (N,) s."""
        t = np.asarray(t, dtype=np.float64)
        out = np.empty((len(t), self.chain.nq))
        for i, body in enumerate(self.chain.bodies):
            s, ch = int(self.chain.q_start[i]), self.channels[i]
            jt = body.joint.type
            if jt == JointType.FREE:
                for k in range(3):
                    out[:, s + k] = ch[k](t)
                out[:, s + 3:s + 7] = _ypr_quat(ch[3](t), ch[4](t), ch[5](t))
            elif jt == JointType.SPHERICAL:
                out[:, s:s + 4] = np_qfrom_rotvec(np.stack([c(t) for c in ch], axis=1))
            elif jt in (JointType.HINGE, JointType.PRISMATIC):
                out[:, s] = ch[0](t)
        return out

    def qd(self, t: np.ndarray, h: float = 1e-5) -> np.ndarray:
        """Joint velocities (N, nqd): rad/s or m/s; free: linear (joint frame) then body angular rate."""
        t = np.asarray(t, dtype=np.float64)
        qa, qb = self.q(t - h), self.q(t + h)
        out = np.empty((len(t), self.chain.nqd))
        for i, body in enumerate(self.chain.bodies):
            s, d = int(self.chain.q_start[i]), int(self.chain.qd_start[i])
            jt = body.joint.type
            if jt == JointType.FREE:
                out[:, d:d + 3] = (qb[:, s:s + 3] - qa[:, s:s + 3]) / (2 * h)
                out[:, d + 3:d + 6] = _body_rate(qa[:, s + 3:s + 7], qb[:, s + 3:s + 7], 2 * h)
            elif jt == JointType.SPHERICAL:
                out[:, d:d + 3] = _body_rate(qa[:, s:s + 4], qb[:, s:s + 4], 2 * h)
            elif jt in (JointType.HINGE, JointType.PRISMATIC):
                out[:, d] = self.channels[i][0](t, 1)
        return out

    def qdd(self, t: np.ndarray, h: float = 1e-4) -> np.ndarray:
        """Joint accelerations (N, nqd): rad/s^2 or m/s^2, central difference of ``qd`` (analytic for hinge/prismatic)."""
        t = np.asarray(t, dtype=np.float64)
        out = (self.qd(t + h) - self.qd(t - h)) / (2 * h)
        for i, body in enumerate(self.chain.bodies):
            if body.joint.type in (JointType.HINGE, JointType.PRISMATIC):
                out[:, int(self.chain.qd_start[i])] = self.channels[i][0](t, 2)
        return out


def _ypr_quat(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Quaternions (N, 4) of z-y'-x'' rotations (rad): Rz(yaw) Ry(pitch) Rx(roll)."""
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    return np.stack([cy * cp * cr + sy * sp * sr, cy * cp * sr - sy * sp * cr,
                     cy * sp * cr + sy * cp * sr, sy * cp * cr - cy * sp * sr], axis=1)


def _body_rate(qa: np.ndarray, qb: np.ndarray, dt: float) -> np.ndarray:
    """Body-frame angular rate (N, 3) rad/s taking qa (N, 4) to qb over dt s."""
    return np_qto_rotvec(np_qmul(np_qconj(qa), qb)) / dt


def generate_motion(chain: Chain, duration_s: float, rng: np.random.Generator | int,
                    settings: MotionSettings = MotionSettings()) -> Motion:
    """Random smooth motion of all joints of ``chain`` over duration_s s (seeded, reproducible)."""
    rng = np.random.default_rng(rng)
    s = settings
    channels: list[tuple[Channel, ...]] = []
    for body in chain.bodies:
        j = body.joint
        lim = j.limits

        def ch(lo: float, hi: float, linear: bool = False) -> Channel:
            if linear:
                return random_channel(rng, lo, hi, duration_s, s, s.max_rate_m_s, s.max_acc_m_s2)
            return random_channel(rng, lo, hi, duration_s, s, s.max_rate_rad_s, s.max_acc_rad_s2)

        if j.type == JointType.FREE:
            tr = s.root_translation_m
            channels.append((ch(-tr, tr, True), ch(-tr, tr, True), ch(-tr, tr, True), ch(-s.root_yaw_rad, s.root_yaw_rad),
                             ch(-s.root_tilt_rad, s.root_tilt_rad), ch(-s.root_tilt_rad, s.root_tilt_rad)))
        elif j.type == JointType.SPHERICAL:
            lo, hi = lim if lim is not None else (-s.spherical_range_rad, s.spherical_range_rad)
            channels.append((ch(lo, hi), ch(lo, hi), ch(lo, hi)))
        elif j.type == JointType.HINGE:
            channels.append((ch(*(lim if lim is not None else (-s.hinge_range_rad, s.hinge_range_rad))),))
        elif j.type == JointType.PRISMATIC:
            lo, hi = lim if lim is not None else (-s.prismatic_range_m, s.prismatic_range_m)
            channels.append((ch(lo, hi, True),))
        else:
            channels.append(())
    log.debug("generated %.1f s of motion for chain %s", duration_s, chain.name)
    return Motion(chain, tuple(channels), float(duration_s))


def sample_motion(chain: Chain, duration_s: float, rate_hz: float, seed: int,
                  settings: MotionSettings = MotionSettings()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampled random motion: t (T,) s, q (T, nq), qd (T, nqd) rad/s or m/s."""
    m = generate_motion(chain, duration_s, seed, settings)
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    return t, m.q(t), m.qd(t)
