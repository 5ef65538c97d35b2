"""Walking and running of a leg (free thigh, knee hinge): periodic strides with rests and turns,
and the heel-strike shocks a skin-mounted IMU feels, reproducible by seed.

The random keyframe motion of ``pipeline.kinematics.motion`` never produces gait: a periodic
knee pattern with fast swing flexion, the thigh swinging about the hip while the pelvis bobs,
and a shock at every heel strike. A stride is keyframed from typical sagittal-plane gait curves
(knee flexion at loading response, extension in mid-stance, peak flexion in swing; hip
flexion at heel strike and in late swing, extension at toe-off), each keyframe drawn per
stride, and joined by a smooth spline.

Frames as in ``configs/chains/knee.yaml``: earth z up; thigh x forward, y left, z along the
segment, so hip flexion is a negative root pitch and knee flexion a positive hinge angle.
Angles in rad, lengths in m, times in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.motion import Motion
from pipeline.kinematics.quaternion import np_qconj, np_qrotate

# stride keyframes (phase of the stride from heel strike, value), values in deg; each value is
# a (low, high) range drawn per stride
_WALK_KNEE = ((0.0, (0, 6)), (0.15, (8, 22)), (0.4, (0, 7)), (0.5, (3, 12)), (0.6, (28, 40)),
              (0.7, (50, 70)), (0.8, (38, 50)), (0.9, (12, 28)))
_RUN_KNEE = ((0.0, (8, 20)), (0.16, (30, 48)), (0.38, (12, 25)), (0.66, (80, 125)),
             (0.92, (20, 40)))
_WALK_HIP = ((0.0, (-32, -20)), (0.15, (-28, -15)), (0.52, (6, 16)), (0.62, (0, 10)),
             (0.85, (-35, -22)))   # root pitch
_RUN_HIP = ((0.0, (-40, -25)), (0.45, (8, 18)), (0.8, (-55, -35)))
_WALK_PERIOD_S, _RUN_PERIOD_S = (0.9, 1.45), (0.62, 0.8)
_FLOOR_WIDTH_RAD = math.radians(2.0)  # the knee's smooth floor at full extension


@dataclass(frozen=True)
class GaitSettings:
    """Bout lengths and shock sizes; times in s, accelerations in m/s^2, rates in rad/s."""

    walk_bout_s: tuple[float, float] = (4.0, 20.0)
    run_bout_s: tuple[float, float] = (3.0, 10.0)
    stand_s: tuple[float, float] = (0.5, 5.0)
    run_prob: float = 0.2            # chance that a bout is running
    turn_max_rad: float = math.pi    # heading change between bouts, while standing
    turn_rate_rad_s: float = 1.5     # mean rate of such a turn
    # heel-strike shock at the shank IMU, walking and running (the thigh IMU feels 0.2..0.6x)
    walk_shock_ms2: tuple[float, float] = (3.0, 15.0)
    run_shock_ms2: tuple[float, float] = (10.0, 40.0)
    shock_gyr_rad_s: float = 2.0     # largest angular-rate part of a shock, shank
    shock_hz: tuple[float, float] = (12.0, 30.0)      # ringing frequency
    shock_decay_s: tuple[float, float] = (0.008, 0.03)


@dataclass(frozen=True)
class GaitMotion:
    """A gait trajectory of a knee chain and its heel strikes (s), for ``imu_synth.simulate``."""

    motion: Motion
    heel_strikes: np.ndarray        # (K,) s
    running: np.ndarray             # (K,) bool, the stride is a running stride

    def q(self, t: np.ndarray) -> np.ndarray:
        """Joint coordinates (N, nq) at times t (N,) s."""
        return self.motion.q(t)


class _Knots:
    """Keyframe lists of the six root channels and the knee, appended in time order."""

    def __init__(self) -> None:
        self.ch: dict[str, tuple[list[float], list[float]]] = {
            k: ([], []) for k in ("x", "y", "z", "yaw", "pitch", "roll", "knee")}

    def add(self, name: str, t: float, value: float) -> None:
        ts, ps = self.ch[name]
        if ts and t <= ts[-1] + 1e-3:  # keep knots strictly increasing
            return
        ts.append(t)
        ps.append(value)

    def channel(self, name: str, duration_s: float, floor: float | None = None) -> SplineChannel:
        """The channel's spline, its last value held to duration_s + 1 s."""
        ts, ps = self.ch[name]
        while ts[-1] < duration_s + 1.0:  # knots 0.25 s apart: a long gap lets the spline ring
            ts.append(ts[-1] + 0.25)
            ps.append(ps[-1])
        return SplineChannel(np.asarray(ts), np.asarray(ps), floor)


class SplineChannel:
    """A C2 cubic spline through keyframes t (K,) s, p (K,), optionally kept above ``floor``
    by a smooth floor: sine-like strides where the keyframe channel of ``motion`` (zero
    velocity at every extremum) is peakier than gait. (A C1 spline such as Akima's gives the
    accelerometers steps of tens of m/s^2 at the knots.)"""

    def __init__(self, t: np.ndarray, p: np.ndarray, floor: float | None = None) -> None:
        self.spline, self.floor = CubicSpline(t, p), floor

    def __call__(self, t: np.ndarray, deriv: int = 0) -> np.ndarray:
        """Value (deriv 0), velocity (1) or acceleration (2) at times t (N,) s."""
        t = np.clip(np.asarray(t, dtype=np.float64), self.spline.x[0], self.spline.x[-1])
        x = self.spline(t)  # held outside the knots, as motion.Channel
        if self.floor is None:
            return x if deriv == 0 else self.spline(t, deriv)
        # f(u) = (u + sqrt(u^2 + e^2)) / 2 on u = x - floor: smooth, 1 deg at the floor,
        # within 0.25 deg of x from 4 deg above it
        u, e = x - self.floor, _FLOOR_WIDTH_RAD
        r = np.sqrt(u * u + e * e)
        if deriv == 0:
            return self.floor + 0.5 * (u + r)
        d1 = self.spline(t, 1)
        if deriv == 1:
            return 0.5 * (1 + u / r) * d1
        return 0.5 * (1 + u / r) * self.spline(t, 2) + 0.5 * e * e / r ** 3 * d1 * d1


def _stride(k: _Knots, rng: np.random.Generator, t0: float, period: float, run: bool,
            heading: float) -> None:
    """Keyframes of one stride starting at heel strike t0."""
    for phase, (lo, hi) in _RUN_KNEE if run else _WALK_KNEE:
        k.add("knee", t0 + phase * period, math.radians(rng.uniform(lo, hi)))
    for phase, (lo, hi) in _RUN_HIP if run else _WALK_HIP:
        k.add("pitch", t0 + phase * period, math.radians(rng.uniform(lo, hi)))
    bob = rng.uniform(0.03, 0.05) if run else rng.uniform(0.01, 0.03)   # pelvis, twice a stride
    for phase, sign in ((0.0, -1), (0.25, 1), (0.5, -1), (0.75, 1)):
        k.add("z", t0 + phase * period, sign * bob)
        k.add("x", t0 + (phase + 0.1) * period, -sign * rng.uniform(0.005, 0.02))
    sway, roll, yaw = rng.uniform(0.01, 0.03), math.radians(rng.uniform(2, 6)), math.radians(
        rng.uniform(2, 8))
    for phase, sign in ((0.0, 1), (0.5, -1)):
        k.add("y", t0 + (phase + 0.25) * period, sign * sway)
        k.add("roll", t0 + (phase + 0.2) * period, sign * roll)
        k.add("yaw", t0 + (phase + 0.1) * period, heading + sign * yaw)


def _stand(k: _Knots, rng: np.random.Generator, t0: float, t1: float, heading0: float,
           heading1: float) -> None:
    """Standing from t0 to t1, knee nearly straight, thigh nearly vertical, turning from
    heading0 to heading1 (rad). Knots every 0.25 s at most: a long gap between knots lets the
    spline ring."""
    knee, hip = math.radians(rng.uniform(0, 12)), math.radians(rng.uniform(-12, 4))
    for u in np.linspace(0.0, 1.0, max(2, math.ceil((t1 - t0) / 0.25) + 1)):
        t = t0 + u * (t1 - t0)
        k.add("knee", t, knee)
        k.add("pitch", t, hip)
        for name in ("x", "y", "z", "roll"):
            k.add(name, t, 0.0)
        k.add("yaw", t, heading0 + (heading1 - heading0) * u * u * (3 - 2 * u))  # smoothstep


def check_knee(chain: Chain) -> None:
    """Raise ValueError unless ``chain`` is a knee: a free thigh and a knee hinge below it."""
    bodies = chain.bodies
    if (len(bodies) != 2 or bodies[0].joint.type != JointType.FREE
            or bodies[1].joint.type != JointType.HINGE):
        raise ValueError(f"gait motion needs a free thigh and a knee hinge; chain "
                         f"'{chain.name}' has {[b.joint.type.name for b in bodies]}")


def gait_motion(chain: Chain, duration_s: float, rng: np.random.Generator | int,
                settings: GaitSettings = GaitSettings()) -> GaitMotion:
    """Bouts of walking and running with standing and turning between them, over duration_s s."""
    check_knee(chain)
    rng = np.random.default_rng(rng)
    s, k = settings, _Knots()
    heading, t = float(rng.uniform(-math.pi, math.pi)), 0.0
    strikes, running = [], []
    while t < duration_s:
        turn = rng.uniform(-s.turn_max_rad, s.turn_max_rad) if strikes else 0.0
        stand = max(rng.uniform(*s.stand_s), abs(turn) / s.turn_rate_rad_s)
        _stand(k, rng, t, t + stand, heading, heading + turn)
        heading += turn
        t += stand
        run = bool(rng.random() < s.run_prob)
        end = t + rng.uniform(*(s.run_bout_s if run else s.walk_bout_s))
        period0 = rng.uniform(*(_RUN_PERIOD_S if run else _WALK_PERIOD_S))
        while t < min(end, duration_s):
            period = period0 * rng.uniform(0.95, 1.05)
            _stride(k, rng, t, period, run, heading)
            strikes.append(t)
            running.append(run)
            t += period
    root = tuple(k.channel(n, duration_s) for n in ("x", "y", "z", "yaw", "pitch", "roll"))
    motion = Motion(chain, (root, (k.channel("knee", duration_s, floor=0.0),)), float(duration_s))
    return GaitMotion(motion, np.asarray(strikes), np.asarray(running, bool))


def heel_strike_shocks(t: np.ndarray, gait: GaitMotion, imu_rotations: np.ndarray,
                       rng: np.random.Generator | int | list[int],
                       settings: GaitSettings = GaitSettings()) -> tuple[np.ndarray, np.ndarray]:
    """Shocks added to the ideal signals: acc (T, m, 3) m/s^2 and gyr (T, m, 3) rad/s, sensor
    frame, at sample times t (T,) s.

    Each heel strike rings as a decaying sine (soft tissue and sensor strap), mostly along the
    segment (body z) with a random sideways part; ``imu_rotations`` (m, 4) sensor->body w, x,
    y, z, in the chain's IMU order. IMUs on the shank feel the full drawn size, the others
    0.2..0.6 of it.
    """
    rng = np.random.default_rng(rng)
    s, chain = settings, gait.motion.chain
    on_shank = [imu.body == chain.bodies[1].name for imu in chain.imus]
    m = len(imu_rotations)
    acc, gyr = np.zeros((len(t), m, 3)), np.zeros((len(t), m, 3))
    for strike, run in zip(gait.heel_strikes, gait.running):
        i0, i1 = np.searchsorted(t, [strike, strike + 0.15])
        if i0 >= i1:
            continue
        dt = t[i0:i1] - strike
        size = rng.uniform(*(s.run_shock_ms2 if run else s.walk_shock_ms2))
        ring = np.sin(2 * math.pi * rng.uniform(*s.shock_hz) * dt + rng.uniform(0, 0.5)) * np.exp(
            -dt / rng.uniform(*s.shock_decay_s))
        for j in range(m):
            gain = 1.0 if on_shank[j] else rng.uniform(0.2, 0.6)
            d = np.array([0.0, 0.0, 1.0]) + 0.5 * rng.normal(size=3)
            w = rng.normal(size=3)
            to_sensor = np_qconj(imu_rotations[j])
            d = np_qrotate(to_sensor, d / np.linalg.norm(d))
            w = np_qrotate(to_sensor, w / np.linalg.norm(w))
            rate = s.shock_gyr_rad_s * size / s.run_shock_ms2[1]  # rad/s, scales with the shock
            acc[i0:i1, j] += gain * size * ring[:, None] * d
            gyr[i0:i1, j] += gain * rate * ring[:, None] * w
    return acc, gyr

