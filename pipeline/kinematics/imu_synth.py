"""Synthetic IMU signals with ground truth from chain kinematics.

Accelerometer: specific force ``acc = R^T (a_site - g)`` with ``g = (0, 0, -9.81)`` m/s^2 in
the earth frame (z up), so a sensor at rest reads +9.81 m/s^2 on its upward axis.
Gyroscope: angular rate of the sensor frame, in the sensor frame, rad/s.
Both come from central differences with step ``fd_step_s`` (default 0.1 ms) of the C2-smooth
trajectory of ``pipeline.kinematics.motion`` around each sample time (error well below 1e-4 m/s^2),
optionally shaken by ``SimSettings.vibration`` (``pipeline.kinematics.vibration``), each sensor
optionally turning against its segment by ``SimSettings.wobble``
(``pipeline.kinematics.sensor_wobble``: skin and strap, a segment's axial turn off the joint model).
A sensor's internal low-pass filter (``SimSettings.bandwidth_hz``; real IMUs run a digital
low-pass of 5-50 Hz before their output, which delays fast motion by several ms) then filters
both, causally, and per-recording sensor errors are added: scale, constant bias, bias random
walk, white noise, saturation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numba import njit
from scipy import signal

from pipeline.kinematics.chain import Chain
from pipeline.kinematics.fk import Kinematics
from pipeline.kinematics.motion import MotionSettings, generate_motion
from pipeline.kinematics.quaternion import (
    np_qconj,
    np_qfrom_rotvec,
    np_qmul,
    np_qrotate,
    np_qto_rotvec,
    qmul4,
    qrot3,
)
from pipeline.kinematics.sensor_wobble import SensorWobble, SensorWobbleSettings
from pipeline.kinematics.vibration import Vibration, VibrationSettings

log = logging.getLogger("imuflow.imu_synth")

GRAVITY_MS2 = 9.81


class Trajectory(Protocol):
    """Anything giving joint coordinates (N, nq) at times t (N,) s, e.g. ``motion.Motion``."""

    def q(self, t: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ImuNoise:
    """Sensor error model, SI units; defaults are DESIGN.md's 'realistic sensors'.

    White noise densities give 0.05 m/s^2 and 0.7 deg/s rms at 100 Hz; constant biases are
    uniform up to +-0.5 m/s^2 and +-3 deg/s per axis and recording.
    """

    acc_noise_density: float = 0.005                       # m/s^2/sqrt(Hz)
    gyr_noise_density: float = math.radians(0.07)          # rad/s/sqrt(Hz)
    acc_bias_max: float = 0.5                              # m/s^2, per axis, per recording
    gyr_bias_max: float = math.radians(3.0)                # rad/s
    acc_bias_walk: float = 5e-4                            # m/s^2/sqrt(s)
    gyr_bias_walk: float = math.radians(0.005)             # rad/s/sqrt(s)
    acc_scale_max: float = 0.01                            # relative, per axis
    gyr_scale_max: float = 0.01
    acc_range: float = 16 * GRAVITY_MS2                    # m/s^2 saturation
    gyr_range: float = math.radians(2000.0)                # rad/s saturation

    @classmethod
    def none(cls) -> ImuNoise:
        """Ideal sensors: no noise, bias, drift, scale error or saturation."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, math.inf, math.inf)


@dataclass(frozen=True)
class SimSettings:
    """Simulation options: motion generator, sensor placement randomisation, differencing step."""

    motion: MotionSettings = field(default_factory=MotionSettings)
    placement_jitter_m: float = 0.05     # +- shift of each IMU along its body axis (uniform)
    mount_rotation_max_rad: float = 0.0  # random mounting rotation up to this angle
    fd_step_s: float = 1e-4              # central-difference step for acc and gyr
    gravity_ms2: float = GRAVITY_MS2
    time_jitter_s: float = 0.0           # +- sampling-time error of each sample (uniform), s
    bandwidth_hz: float = math.inf       # cutoff of the sensors' internal low-pass (2nd-order
                                         # Butterworth, causal) on acc and gyr, Hz; inf: none
    vibration: VibrationSettings | None = None  # high-frequency motion added to the trajectory
    wobble: SensorWobbleSettings | None = None  # sensors turning against their segments


@dataclass(frozen=True)
class SimRecording:
    """Simulated IMU data with ground truth; T samples, n bodies, n_imu sensors.

    Attributes:
        t: (T,) float64, s, the true sample times (off the 1/rate grid with time jitter).
        acc: (T, n_imu, 3) float32, m/s^2, sensor frame.
        gyr: (T, n_imu, 3) float32, rad/s, sensor frame. q: (T, nq) float64 joint coordinates.
        q_rel: (T, n, 4) float64 body->parent wxyz. q_world: (T, n, 4) body->earth wxyz.
        pos_world: (T, n, 3) float64 m, earth frame. joint_angles: (T, n_hinge) float64 rad.
        imu_pos_world: (T, n_imu, 3) float64 m; imu_q_world: (T, n_imu, 4) sensor->earth.
        imu_positions: (n_imu, 3) m and imu_rotations: (n_imu, 4) sites used, body frame.
        acc_bias, gyr_bias: (n_imu, 3) constant biases (m/s^2, rad/s) of this recording.
    """

    t: np.ndarray
    acc: np.ndarray
    gyr: np.ndarray
    q: np.ndarray
    q_rel: np.ndarray
    q_world: np.ndarray
    pos_world: np.ndarray
    joint_angles: np.ndarray
    imu_pos_world: np.ndarray
    imu_q_world: np.ndarray
    imu_names: tuple[str, ...]
    hinge_names: tuple[str, ...]
    imu_positions: np.ndarray
    imu_rotations: np.ndarray
    acc_bias: np.ndarray
    gyr_bias: np.ndarray
    rate_hz: float


def _placement(chain: Chain, rng: np.random.Generator, s: SimSettings) -> tuple[np.ndarray, np.ndarray]:
    """Randomised site positions (m, 3) m and rotations (m, 4): shift along each site's dominant axis."""
    pos = np.array(chain.imu_positions, dtype=np.float64)
    rot = np.array(chain.imu_rotations, dtype=np.float64)
    m = len(pos)
    if s.placement_jitter_m > 0 and m:
        ax = np.argmax(np.abs(pos), axis=1)
        pos[np.arange(m), ax] += rng.uniform(-s.placement_jitter_m, s.placement_jitter_m, m)
    if s.mount_rotation_max_rad > 0 and m:
        axis = rng.normal(size=(m, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        angle = rng.uniform(0, s.mount_rotation_max_rad, (m, 1))
        rot = np_qmul(rot, np_qfrom_rotvec(axis * angle))
    return pos, rot


def sensor_signals_np(spos: np.ndarray, squat: np.ndarray, n: int, h: float,
                      gravity_ms2: float) -> tuple[np.ndarray, np.ndarray]:
    """Ideal acc (n, m, 3) m/s^2 and gyr (n, m, 3) rad/s, sensor frame, from site poses at t-h, t, t+h.

    ``spos`` (3n, m, 3) m and ``squat`` (3n, m, 4) sensor->world stack the three time grids.
    Plain numpy reference of ``sensor_signals_into``.
    """
    sm, s0, sp = spos[:n], spos[n:2 * n], spos[2 * n:]
    qm, q0, qp = squat[:n], squat[n:2 * n], squat[2 * n:]
    a_world = (sp - 2.0 * s0 + sm) / (h * h)
    a_world[..., 2] += gravity_ms2  # a - g with g = (0, 0, -9.81)
    return (np_qrotate(np_qconj(q0), a_world),
            np_qto_rotvec(np_qmul(np_qconj(qm), qp)) / (2.0 * h))


@njit(cache=True)
def sensor_signals_into(spos: np.ndarray, squat: np.ndarray, n: int, h: float, gravity_ms2: float,
                        acc: np.ndarray, gyr: np.ndarray) -> None:
    """Numba twin of ``sensor_signals_np`` writing into acc, gyr (n, m, 3) float64."""
    inv_h2, inv_2h = 1.0 / (h * h), 1.0 / (2.0 * h)
    for k in range(n):
        for j in range(spos.shape[1]):
            ax = (spos[2 * n + k, j, 0] - 2.0 * spos[n + k, j, 0] + spos[k, j, 0]) * inv_h2
            ay = (spos[2 * n + k, j, 1] - 2.0 * spos[n + k, j, 1] + spos[k, j, 1]) * inv_h2
            az = (spos[2 * n + k, j, 2] - 2.0 * spos[n + k, j, 2] + spos[k, j, 2]) * inv_h2
            az += gravity_ms2
            w, x, y, z = squat[n + k, j, 0], squat[n + k, j, 1], squat[n + k, j, 2], squat[n + k, j, 3]
            acc[k, j, 0], acc[k, j, 1], acc[k, j, 2] = qrot3(w, -x, -y, -z, ax, ay, az)
            dw, dx, dy, dz = qmul4(squat[k, j, 0], -squat[k, j, 1], -squat[k, j, 2], -squat[k, j, 3],
                                   squat[2 * n + k, j, 0], squat[2 * n + k, j, 1],
                                   squat[2 * n + k, j, 2], squat[2 * n + k, j, 3])
            if dw < 0.0:
                dw, dx, dy, dz = -dw, -dx, -dy, -dz
            vn = math.sqrt(dx * dx + dy * dy + dz * dz)
            scale = 2.0 if vn < 1e-12 else 2.0 * math.atan2(vn, dw) / vn
            gyr[k, j, 0] = dx * scale * inv_2h
            gyr[k, j, 1] = dy * scale * inv_2h
            gyr[k, j, 2] = dz * scale * inv_2h


class SensorBandwidth:
    """The sensors' internal low-pass: a causal 2nd-order Butterworth at ``cutoff_hz`` on each
    acc and gyr channel (m/s^2, rad/s), its state carried from block to block and started
    at rest on the first sample (no start-up transient). ``inf`` passes the signals through."""

    def __init__(self, cutoff_hz: float, rate_hz: float) -> None:
        self.sos = None
        if math.isfinite(cutoff_hz):
            if not 0.0 < cutoff_hz < 0.5 * rate_hz:
                raise ValueError(f"bandwidth_hz {cutoff_hz} must lie between 0 and the Nyquist "
                                 f"frequency {0.5 * rate_hz:g} Hz of {rate_hz:g} Hz")
            self.sos = signal.butter(2, cutoff_hz, fs=rate_hz, output="sos")
        self._zi: np.ndarray | None = None

    def filter(self, acc: np.ndarray, gyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """acc, gyr (n, m, 3) filtered (new arrays), or the same arrays without a cutoff."""
        if self.sos is None or not len(acc):
            return acc, gyr
        x = np.concatenate([acc, gyr], axis=1).reshape(len(acc), -1)  # (n, 2m*3)
        if self._zi is None:
            self._zi = signal.sosfilt_zi(self.sos)[:, :, None] * x[0]
        y, self._zi = signal.sosfilt(self.sos, x, axis=0, zi=self._zi)
        y = y.reshape(acc.shape[0], 2 * acc.shape[1], 3)
        return y[:, :acc.shape[1]], y[:, acc.shape[1]:]


class ImuSimulator:
    """Stateful simulator producing consecutive blocks of one continuous recording.

    Used in one call by ``simulate`` and block by block by a real-time sim driver. The random
    motion spans ``duration_s`` (default one hour) and holds its last pose afterwards.
    """

    def __init__(self, chain: Chain, rate_hz: float, seed: int, noise: ImuNoise = ImuNoise(),
                 settings: SimSettings = SimSettings(), duration_s: float = 3600.0,
                 motion: Trajectory | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        rng = np.random.default_rng(seed)
        r_motion, r_place, r_bias, self._rng = rng.spawn(4)
        self._bandwidth = SensorBandwidth(settings.bandwidth_hz, rate_hz)
        self.chain, self.rate_hz, self.noise, self.settings = chain, float(rate_hz), noise, settings
        self.motion = motion if motion is not None else generate_motion(
            chain, duration_s, r_motion, settings.motion)
        if settings.vibration is not None:  # its own stream: the rest of the recording is kept
            self.motion = Vibration(self.motion, chain, settings.vibration, [seed, 6101])
        self.kin = Kinematics(chain)
        self.imu_positions, self.imu_rotations = _placement(chain, r_place, settings)
        self.kin.set_sites(self.imu_positions, self.imu_rotations)
        self._wobble = None if settings.wobble is None else SensorWobble(
            self.imu_positions, self.imu_rotations, settings.wobble, [seed, 6131])
        m = len(chain.imus)
        self.acc_bias = r_bias.uniform(-noise.acc_bias_max, noise.acc_bias_max, (m, 3))
        self.gyr_bias = r_bias.uniform(-noise.gyr_bias_max, noise.gyr_bias_max, (m, 3))
        self.acc_scale = 1 + r_bias.uniform(-noise.acc_scale_max, noise.acc_scale_max, (m, 3))
        self.gyr_scale = 1 + r_bias.uniform(-noise.gyr_scale_max, noise.gyr_scale_max, (m, 3))
        self._acc_walk = np.zeros((m, 3))
        self._gyr_walk = np.zeros((m, 3))
        self._next = 0

    def _errors(self, true: np.ndarray, scale: np.ndarray, bias: np.ndarray, walk0: np.ndarray,
                walk_density: float, density: float, limit: float) -> tuple[np.ndarray, np.ndarray]:
        """Apply scale, bias, random-walk drift, white noise and saturation to (T, m, 3)."""
        dt = 1.0 / self.rate_hz
        steps = self._rng.normal(0.0, walk_density * math.sqrt(dt), true.shape) if walk_density else 0.0
        walk = walk0 + np.cumsum(steps, axis=0) if walk_density else np.broadcast_to(walk0, true.shape)
        white = self._rng.normal(0.0, density * math.sqrt(self.rate_hz), true.shape) if density else 0.0
        out = np.clip(true * scale + bias + walk + white, -limit, limit)
        return out.astype(np.float32), np.array(walk[-1]) if len(true) else walk0

    def next_block(self, n: int) -> SimRecording:
        """The next n samples of the recording (times continue from the previous block)."""
        t = (self._next + np.arange(n)) / self.rate_hz
        self._next += n
        if self.settings.time_jitter_s > 0:  # sampled off the nominal grid; truth at the same times
            j = self.settings.time_jitter_s
            t = t + self._rng.uniform(-j, j, n)
        h = self.settings.fd_step_s
        q_all = self.motion.q(np.concatenate([t - h, t, t + h]))
        pos, quat = self.kin.forward_batch(q_all)
        spos, squat = self.kin.sites(pos, quat)
        if self._wobble is not None:
            squat = self._wobble.apply(squat, np.concatenate([t - h, t, t + h]))
        s0, q0 = spos[n:2 * n], squat[n:2 * n]
        acc_true, gyr_true = np.empty_like(s0), np.empty_like(s0)
        sensor_signals_into(spos, squat, n, h, self.settings.gravity_ms2, acc_true, gyr_true)
        acc_true, gyr_true = self._bandwidth.filter(acc_true, gyr_true)
        nz = self.noise
        acc, self._acc_walk = self._errors(acc_true, self.acc_scale, self.acc_bias, self._acc_walk,
                                           nz.acc_bias_walk, nz.acc_noise_density, nz.acc_range)
        gyr, self._gyr_walk = self._errors(gyr_true, self.gyr_scale, self.gyr_bias, self._gyr_walk,
                                           nz.gyr_bias_walk, nz.gyr_noise_density, nz.gyr_range)
        q = q_all[n:2 * n]
        _, q_rel = self.kin.relative_batch(q)
        hb = self.chain.hinge_bodies
        return SimRecording(
            t=t, acc=acc, gyr=gyr, q=q, q_rel=q_rel, q_world=quat[n:2 * n], pos_world=pos[n:2 * n],
            joint_angles=q[:, self.chain.q_start[hb]], imu_pos_world=s0, imu_q_world=q0,
            imu_names=self.chain.imu_names, hinge_names=tuple(self.chain.body_names[i] for i in hb),
            imu_positions=self.imu_positions, imu_rotations=self.imu_rotations,
            acc_bias=self.acc_bias, gyr_bias=self.gyr_bias, rate_hz=self.rate_hz)


def simulate(chain: Chain, duration_s: float, rate_hz: float, seed: int,
             noise: ImuNoise = ImuNoise(), settings: SimSettings = SimSettings(),
             motion: Trajectory | None = None) -> SimRecording:
    """Simulate duration_s s of random motion (or ``motion``) sampled at rate_hz Hz."""
    n = round(duration_s * rate_hz)
    sim = ImuSimulator(chain, rate_hz, seed, noise, settings, duration_s=duration_s + 1.0,
                       motion=motion)
    return sim.next_block(n)


__all__ = ["ImuNoise", "ImuSimulator", "SensorBandwidth", "SimRecording", "SimSettings",
           "Trajectory", "simulate"]
