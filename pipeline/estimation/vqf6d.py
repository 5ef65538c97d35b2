"""Vqf6DBank: VQF's 6D orientation filter (gyr + acc) as a numba kernel, for one-frame hot paths.

The same filter as the vqf package's ``vqf.VQF`` (Laidig and Seel, "VQF: Highly accurate
IMU orientation estimation with bias estimation and magnetic disturbance rejection",
Information Fusion 2023) without the magnetometer: strapdown integration, inclination
correction from the low-passed acceleration in an almost inertial frame, rest detection and
gyro bias estimation at rest and in motion. The operations follow the package's C++ source
step by step and its coefficients are taken from a ``vqf.VQF`` built with the same
parameters, so the two agree to round-off (tests/test_vqf6d.py). What this adds: the state
is a float64 array that compiled code updates in place (``vqf6d_step``), so a frame of
several filters and what comes after them can run in one kernel call.

Units: gyr rad/s, acc m/s^2, both in the sensor frame; quaternions w, x, y, z, sensor to the
filter's earth frame (z up, heading arbitrary).
"""

from __future__ import annotations

import math

import numpy as np
import vqf
from numba import njit

from pipeline.estimation.vqf_tuning import VqfTuning
from pipeline.kinematics.quaternion import qmul4

EPS = float(np.finfo(np.float64).eps)

# state layout (float64): the C++ VQFState fields the 6D filter uses; a second-order filter's
# state is 2 values per channel, the first NaN until its averaging start-up has ended
GYR_Q, ACC_Q, REST_DETECTED, REST_T, LAST_ACC_LP, ACC_LP = 0, 4, 8, 9, 10, 13
BIAS, BIAS_P, R_LP, BIAS_LP, REST_GYR_LAST, REST_GYR_LP, REST_ACC_LP = 19, 22, 31, 49, 53, 56, 62
MISSING = 68  # not VQF's: samples in a row without finite input (a sensor gap), for restarts
STATE_SIZE = 69
# scratch layout (float64), one array per kernel call: a filtered 3-vector, the rotation matrix,
# the filtered R b, the error, the measurement weights and three 3x3 matrices
S_V3, S_R, S_BLP, S_E, S_W, S_A, S_B, S_C = 0, 3, 12, 14, 17, 20, 29, 38
SCRATCH_SIZE = 47
# coefficient layout (float64)
C_GYR_TS, C_ACC_TS, C_TAU_ACC, C_ACC_B, C_ACC_A, C_BIAS_P0, C_BIAS_V = 0, 1, 2, 3, 6, 8, 9
C_MOTION_W, C_VERTICAL_W, C_REST_W = 10, 11, 12
C_RGYR_B, C_RGYR_A, C_RACC_B, C_RACC_A = 13, 16, 18, 21
C_REST_TAU, C_REST_TH_GYR2, C_REST_TH_ACC2, C_REST_MIN_T, C_BIAS_CLIP = 23, 24, 25, 26, 27
C_RESTART = 28  # not VQF's: a gap of this many samples restarts the filter (0: never)
COEFF_SIZE = 29


def vqf6d_coefficients(ts: float, tuning: VqfTuning, restart_after: int = 0) -> np.ndarray:
    """(COEFF_SIZE,) float64 coefficients of the filter at sample time ``ts`` s, from the vqf
    package's own set-up with ``tuning`` (other parameters at the package's defaults), and
    ``restart_after`` samples of a gap that restart it (``vqf6d_restart``; 0: never)."""
    ref = vqf.VQF(ts, **tuning.kwargs())
    c, p = ref.coeffs, ref.params
    if not (p["motionBiasEstEnabled"] and p["restBiasEstEnabled"]):
        raise ValueError("Vqf6DBank runs with motion and rest bias estimation enabled")
    out = np.empty(COEFF_SIZE)
    out[C_GYR_TS], out[C_ACC_TS], out[C_TAU_ACC] = c["gyrTs"], c["accTs"], p["tauAcc"]
    out[C_ACC_B:C_ACC_B + 3], out[C_ACC_A:C_ACC_A + 2] = c["accLpB"], c["accLpA"]
    out[C_BIAS_P0], out[C_BIAS_V] = c["biasP0"], c["biasV"]
    out[C_MOTION_W], out[C_VERTICAL_W], out[C_REST_W] = (c["biasMotionW"], c["biasVerticalW"],
                                                         c["biasRestW"])
    out[C_RGYR_B:C_RGYR_B + 3], out[C_RGYR_A:C_RGYR_A + 2] = c["restGyrLpB"], c["restGyrLpA"]
    out[C_RACC_B:C_RACC_B + 3], out[C_RACC_A:C_RACC_A + 2] = c["restAccLpB"], c["restAccLpA"]
    out[C_REST_TAU] = p["restFilterTau"]
    out[C_REST_TH_GYR2] = (p["restThGyr"] * (math.pi / 180.0)) ** 2
    out[C_REST_TH_ACC2] = p["restThAcc"] ** 2
    out[C_REST_MIN_T] = p["restMinT"]
    out[C_BIAS_CLIP] = p["biasClip"] * (math.pi / 180.0)
    out[C_RESTART] = restart_after
    return out


def vqf6d_initial_state(coeffs: np.ndarray) -> np.ndarray:
    """(STATE_SIZE,) float64 state of a fresh filter (identity orientation, no bias)."""
    s = np.full(STATE_SIZE, np.nan)
    s[GYR_Q:GYR_Q + 4] = s[ACC_Q:ACC_Q + 4] = (1.0, 0.0, 0.0, 0.0)
    s[REST_DETECTED] = s[REST_T] = 0.0
    s[LAST_ACC_LP:LAST_ACC_LP + 3] = s[BIAS:BIAS + 3] = s[REST_GYR_LAST:REST_GYR_LAST + 3] = 0.0
    s[BIAS_P:BIAS_P + 9] = (coeffs[C_BIAS_P0] * np.eye(3)).ravel()
    s[MISSING] = 0.0
    return s


class Vqf6DBank:
    """VQF 6D filters of one or more sensors with one tuning, run over frames in one kernel call.

    ``sensors``: the sensor index in the frames of each filter. Per update the orientations
    (n, 4), the inputs the filters took ((n, 3) float64, C order, non-finite vectors zeroed)
    and where a filter restarted after a gap ((n,) bool; ``restart_after`` samples without
    finite input restart it, 0 never: ``vqf6d_restart``) are kept per sensor in ``quat6d``,
    ``inputs`` and ``restarted``.
    """

    def __init__(self, sensors: list[int], rate_hz: float, tuning: VqfTuning,
                 restart_after: int = 0) -> None:
        self.sensors = np.array(sensors, np.int64)
        self.coeffs = vqf6d_coefficients(1.0 / rate_hz, tuning, restart_after)
        self.states = np.stack([vqf6d_initial_state(self.coeffs)] * len(sensors))
        self.quat6d: dict[int, np.ndarray] = {}
        self.inputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.restarted: dict[int, np.ndarray] = {}

    def update(self, acc: np.ndarray, gyr: np.ndarray) -> None:
        """Advance every filter over (n, n_sensors, 3) acc m/s^2 and gyr rad/s."""
        k, n = len(self.sensors), len(acc)
        quat, g, a = np.empty((k, n, 4)), np.empty((k, n, 3)), np.empty((k, n, 3))
        restarted = np.empty((k, n), np.bool_)
        vqf6d_frames(self.states, self.coeffs, self.sensors, gyr, acc, quat, g, a, restarted)
        keys = self.sensors.tolist()
        self.quat6d = dict(zip(keys, quat, strict=True))
        self.inputs = dict(zip(keys, zip(g, a, strict=True), strict=True))
        self.restarted = dict(zip(keys, restarted, strict=True))


@njit(cache=True)
def vqf6d_frames(states, c, sensors, gyr, acc, quat, gyr_used, acc_used,
                 restarted):  # pragma: no cover
    """Filter j (state states[j]) over sensor sensors[j] of gyr, acc (n, n_sensors, 3): its
    orientation after each frame into quat[j] (n, 4), the inputs it took into gyr_used[j] and
    acc_used[j] (n, 3) float64, a vector with a non-finite value zeroed (zero acc: no
    correction, as ``constraint.finite_or_zero``), and into restarted[j] (n,) bool whether
    the frame restarted the filter (the first finite one after c[C_RESTART] or more without:
    ``vqf6d_restart``)."""
    scratch = np.empty(SCRATCH_SIZE)
    for t in range(gyr.shape[0]):
        for j in range(sensors.shape[0]):
            i = sensors[j]
            finite = _finite_or_zero(gyr[t, i], gyr_used[j, t])
            finite = _finite_or_zero(acc[t, i], acc_used[j, t]) and finite
            g, a = gyr_used[j, t], acc_used[j, t]
            s = states[j]
            restarted[j, t] = False
            if not finite:
                s[MISSING] += 1.0
            else:
                if 0 < c[C_RESTART] <= s[MISSING] and (a[0] != 0.0 or a[1] != 0.0
                                                        or a[2] != 0.0):
                    vqf6d_restart(s, a[0], a[1], a[2])
                    restarted[j, t] = True
                s[MISSING] = 0.0
            vqf6d_step(s, c, g[0], g[1], g[2], a[0], a[1], a[2], scratch)
            quat[j, t, 0], quat[j, t, 1], quat[j, t, 2], quat[j, t, 3] = vqf6d_quat(s)


@njit(cache=True, inline="always")
def _finite_or_zero(v, out):  # pragma: no cover - numba
    """out = v as float64, or zeros where any of its 3 values is not finite; True if finite."""
    x, y, z = np.float64(v[0]), np.float64(v[1]), np.float64(v[2])
    if math.isfinite(x + y + z) or (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
        out[0], out[1], out[2] = x, y, z
        return True
    out[0] = out[1] = out[2] = 0.0
    return False


@njit(cache=True)
def vqf6d_restart(s, ax, ay, az):  # pragma: no cover - numba
    """Start filter state s again after a sensor gap, from the acceleration (m/s^2, sensor
    frame) of the first sample after it: the orientation turned by an unknown amount in the
    gap, so the inclination is taken from this sample outright (the shortest rotation of it
    onto +z) and the heading kept from before (the swing-twist twist about z); the low-pass
    and rest filters start again; the gyro bias and its covariance are kept."""
    n = math.sqrt(ax * ax + ay * ay + az * az)
    ux, uy, uz = ax / n, ay / n, az / n
    if uz > -1.0 + 1e-9:  # the shortest rotation of u onto z: (1 + u.z, u x z), normalised
        iw, ix, iy = 1.0 + uz, uy, -ux
        m = math.sqrt(iw * iw + ix * ix + iy * iy)
        iw, ix, iy = iw / m, ix / m, iy / m
    else:  # upside down: half a turn about x
        iw, ix, iy = 0.0, 1.0, 0.0
    ow, ox, oy, oz = vqf6d_quat(s)
    # old * conj(incl): the rotation from the new inclination to the old orientation; its
    # twist about z is the heading to keep
    dw, dx, dy, dz = qmul4(ow, ox, oy, oz, iw, -ix, -iy, 0.0)
    m = math.sqrt(dw * dw + dz * dz)
    tw, tz = (dw / m, dz / m) if m > EPS else (1.0, 0.0)
    q = qmul4(tw, 0.0, 0.0, tz, iw, ix, iy, 0.0)
    _store_unit(s, GYR_Q, q[0], q[1], q[2], q[3])
    s[ACC_Q], s[ACC_Q + 1], s[ACC_Q + 2], s[ACC_Q + 3] = 1.0, 0.0, 0.0, 0.0
    s[REST_DETECTED] = s[REST_T] = 0.0
    for i in range(3):
        s[LAST_ACC_LP + i] = s[REST_GYR_LAST + i] = 0.0
    for lo, hi in ((ACC_LP, BIAS), (R_LP, REST_GYR_LAST), (REST_GYR_LP, MISSING)):
        for i in range(lo, hi):
            s[i] = np.nan


@njit(cache=True, inline="always")
def vqf6d_quat(s):  # pragma: no cover - numba
    """The 6D orientation (w, x, y, z) of state s: accQuat * gyrQuat."""
    return qmul4(s[ACC_Q], s[ACC_Q + 1], s[ACC_Q + 2], s[ACC_Q + 3],
                 s[GYR_Q], s[GYR_Q + 1], s[GYR_Q + 2], s[GYR_Q + 3])


@njit(cache=True)
def vqf6d_step(s, c, gx, gy, gz, ax, ay, az, scratch):  # pragma: no cover - numba
    """One sample: VQF::updateGyr then VQF::updateAcc on state s with coefficients c;
    ``scratch`` (SCRATCH_SIZE,) working memory, so that a step allocates nothing."""
    _update_gyr(s, c, gx, gy, gz, scratch)
    if ax == 0.0 and ay == 0.0 and az == 0.0:  # VQF ignores [0 0 0] samples
        return
    _update_acc(s, c, ax, ay, az, scratch)


@njit(cache=True)
def _update_gyr(s, c, gx, gy, gz, scratch):  # pragma: no cover - numba
    """Rest detection on the gyro, then the strapdown step with the bias removed."""
    lx, ly, lz = _filter3(s, REST_GYR_LP, c, C_RGYR_B, C_RGYR_A, c[C_REST_TAU], c[C_GYR_TS],
                          gx, gy, gz, scratch)
    s[REST_GYR_LAST], s[REST_GYR_LAST + 1], s[REST_GYR_LAST + 2] = lx, ly, lz
    dev = (gx - lx) ** 2 + (gy - ly) ** 2 + (gz - lz) ** 2
    clip = c[C_BIAS_CLIP]
    if dev >= c[C_REST_TH_GYR2] or abs(lx) > clip or abs(ly) > clip or abs(lz) > clip:
        s[REST_T], s[REST_DETECTED] = 0.0, 0.0
    x, y, z = gx - s[BIAS], gy - s[BIAS + 1], gz - s[BIAS + 2]
    norm = math.sqrt(x * x + y * y + z * z)
    if norm > EPS:
        angle = norm * c[C_GYR_TS]
        cw, sn = math.cos(angle / 2), math.sin(angle / 2) / norm
        q = qmul4(s[GYR_Q], s[GYR_Q + 1], s[GYR_Q + 2], s[GYR_Q + 3], cw, sn * x, sn * y, sn * z)
        _store_unit(s, GYR_Q, q[0], q[1], q[2], q[3])


@njit(cache=True)
def _update_acc(s, c, ax, ay, az, scratch):  # pragma: no cover - numba
    """Rest detection on the accelerometer, inclination correction, then the bias update."""
    ts = c[C_ACC_TS]
    lx, ly, lz = _filter3(s, REST_ACC_LP, c, C_RACC_B, C_RACC_A, c[C_REST_TAU], ts, ax, ay, az,
                          scratch)
    if (ax - lx) ** 2 + (ay - ly) ** 2 + (az - lz) ** 2 >= c[C_REST_TH_ACC2]:
        s[REST_T], s[REST_DETECTED] = 0.0, 0.0
    else:
        s[REST_T] += ts
        if s[REST_T] >= c[C_REST_MIN_T]:
            s[REST_DETECTED] = 1.0
    ex, ey, ez = _rotate(s, GYR_Q, ax, ay, az)  # acc in the almost inertial frame
    fx, fy, fz = _filter3(s, ACC_LP, c, C_ACC_B, C_ACC_A, c[C_TAU_ACC], ts, ex, ey, ez, scratch)
    s[LAST_ACC_LP], s[LAST_ACC_LP + 1], s[LAST_ACC_LP + 2] = fx, fy, fz
    ex, ey, ez = _rotate(s, ACC_Q, fx, fy, fz)
    n = math.sqrt(ex * ex + ey * ey + ez * ez)
    if n >= EPS:
        ex, ey, ez = ex / n, ey / n, ez / n
    qw = math.sqrt((ez + 1) / 2)
    if qw > 1e-6:
        cw, cx, cy = qw, 0.5 * ey / qw, -0.5 * ex / qw
    else:  # the correction is within 0.00011 deg of 180 deg
        cw, cx, cy = 0.0, 1.0, 0.0
    q = qmul4(cw, cx, cy, 0.0, s[ACC_Q], s[ACC_Q + 1], s[ACC_Q + 2], s[ACC_Q + 3])
    _store_unit(s, ACC_Q, q[0], q[1], q[2], q[3])
    _update_bias(s, c, ex, ey, scratch)


@njit(cache=True)
def _update_bias(s, c, ex, ey, scratch):  # pragma: no cover - numba
    """The gyro bias Kalman update (VQF::updateAcc's bias estimation), ex, ey the normalised
    acceleration in the 6D earth frame before this sample's correction."""
    ts, clip = c[C_ACC_TS], c[C_BIAS_CLIP]
    w, x, y, z = vqf6d_quat(s)
    r, blp = scratch[S_R:S_R + 9], scratch[S_BLP:S_BLP + 2]
    e, wd = scratch[S_E:S_E + 3], scratch[S_W:S_W + 3]
    ka, kb, kc = scratch[S_A:S_A + 9], scratch[S_B:S_B + 9], scratch[S_C:S_C + 9]
    r[0] = 1 - 2 * y * y - 2 * z * z
    r[1] = 2 * (y * x - w * z)
    r[2] = 2 * (w * y + z * x)
    r[3] = 2 * (w * z + y * x)
    r[4] = 1 - 2 * x * x - 2 * z * z
    r[5] = 2 * (y * z - x * w)
    r[6] = 2 * (z * x - w * y)
    r[7] = 2 * (w * x + z * y)
    r[8] = 1 - 2 * x * x - 2 * y * y
    b0, b1, b2 = s[BIAS], s[BIAS + 1], s[BIAS + 2]
    blp[0] = r[0] * b0 + r[1] * b1 + r[2] * b2
    blp[1] = r[3] * b0 + r[4] * b1 + r[5] * b2
    _filter_n(s, R_LP, c, C_ACC_B, C_ACC_A, c[C_TAU_ACC], ts, r)
    _filter_n(s, BIAS_LP, c, C_ACC_B, C_ACC_A, c[C_TAU_ACC], ts, blp)
    if s[REST_DETECTED] != 0.0:
        e[0] = s[REST_GYR_LAST] - b0
        e[1] = s[REST_GYR_LAST + 1] - b1
        e[2] = s[REST_GYR_LAST + 2] - b2
        r[:] = 0.0
        r[0] = r[4] = r[8] = 1.0
        wd[:] = c[C_REST_W]
    else:
        e[0] = -ey / ts + blp[0] - r[0] * b0 - r[1] * b1 - r[2] * b2
        e[1] = ex / ts + blp[1] - r[3] * b0 - r[4] * b1 - r[5] * b2
        e[2] = - r[6] * b0 - r[7] * b1 - r[8] * b2
        wd[0] = wd[1] = c[C_MOTION_W]
        wd[2] = c[C_VERTICAL_W]
    p = s[BIAS_P:BIAS_P + 9]
    for i in (0, 4, 8):  # P = P + V, also without a measurement
        if p[i] < c[C_BIAS_P0]:
            p[i] += c[C_BIAS_V]
    for i in range(3):
        e[i] = min(max(e[i], -clip), clip)
    _mat_mul(p, False, r, True, ka)   # P R^T
    _mat_mul(r, False, ka, False, kb)  # R P R^T
    kb[0] += wd[0]
    kb[4] += wd[1]
    kb[8] += wd[2]
    _mat_inv(kb, ka)                   # inv(W + R P R^T)
    _mat_mul(r, True, ka, False, kb)   # R^T inv(...)
    _mat_mul(p, False, kb, False, ka)  # K = P R^T inv(...)
    for i in range(3):
        s[BIAS + i] += ka[3 * i] * e[0] + ka[3 * i + 1] * e[1] + ka[3 * i + 2] * e[2]
    _mat_mul(ka, False, r, False, kb)  # K R
    _mat_mul(kb, False, p, False, kc)  # K R P
    for i in range(9):
        p[i] -= kc[i]
    for i in range(3):
        s[BIAS + i] = min(max(s[BIAS + i], -clip), clip)


@njit(cache=True, inline="always")
def _rotate(s, at, vx, vy, vz):  # pragma: no cover - numba
    """VQF::quatRotate of v by the quaternion at s[at:at + 4]."""
    q0, q1, q2, q3 = s[at], s[at + 1], s[at + 2], s[at + 3]
    return ((1 - 2 * q2 * q2 - 2 * q3 * q3) * vx + 2 * vy * (q2 * q1 - q0 * q3)
            + 2 * vz * (q0 * q2 + q3 * q1),
            2 * vx * (q0 * q3 + q2 * q1) + vy * (1 - 2 * q1 * q1 - 2 * q3 * q3)
            + 2 * vz * (q2 * q3 - q1 * q0),
            2 * vx * (q3 * q1 - q0 * q2) + 2 * vy * (q0 * q1 + q3 * q2)
            + vz * (1 - 2 * q1 * q1 - 2 * q2 * q2))


@njit(cache=True, inline="always")
def _store_unit(s, at, w, x, y, z):  # pragma: no cover - numba
    """s[at:at + 4] = q / |q| (left as is below EPS, as VQF::normalize)."""
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n >= EPS:
        w, x, y, z = w / n, x / n, y / n, z / n
    s[at], s[at + 1], s[at + 2], s[at + 3] = w, x, y, z


@njit(cache=True)
def _filter3(s, at, c, b_at, a_at, tau, ts, x0, x1, x2, scratch):  # pragma: no cover
    """VQF::filterVec of a 3-vector on scalars; returns the filtered (x, y, z)."""
    v = scratch[S_V3:S_V3 + 3]
    v[0], v[1], v[2] = x0, x1, x2
    _filter_n(s, at, c, b_at, a_at, tau, ts, v)
    return v[0], v[1], v[2]


@njit(cache=True)
def _filter_n(s, at, c, b_at, a_at, tau, ts, x):  # pragma: no cover - numba
    """VQF::filterVec in place on x (n,): a second-order low-pass with state s[at:at + 2n],
    whose output is the running mean of the inputs until ``tau`` s have passed."""
    n = x.shape[0]
    if math.isnan(s[at]):  # start-up: s[at + 1] counts the samples, s[at + 2 + i] sums them
        if math.isnan(s[at + 1]):
            s[at + 1] = 0.0
            for i in range(n):
                s[at + 2 + i] = 0.0
        s[at + 1] += 1.0
        for i in range(n):
            s[at + 2 + i] += x[i]
            x[i] = s[at + 2 + i] / s[at + 1]
        if s[at + 1] * ts >= tau:
            for i in range(n):  # steady state at the mean (VQF::filterInitialState)
                s[at + 2 * i] = x[i] * (1 - c[b_at])
                s[at + 2 * i + 1] = x[i] * (c[b_at + 2] - c[a_at + 1])
        return
    for i in range(n):
        xi = x[i]
        y = c[b_at] * xi + s[at + 2 * i]
        s[at + 2 * i] = c[b_at + 1] * xi - c[a_at] * y + s[at + 2 * i + 1]
        s[at + 2 * i + 1] = c[b_at + 2] * xi - c[a_at + 1] * y
        x[i] = y


@njit(cache=True, inline="always")
def _mat_mul(a, a_t, b, b_t, out):  # pragma: no cover - numba
    """out = op(a) op(b) of row-major 3x3 matrices (9,), op the transpose where a_t / b_t
    (VQF::matrix3Multiply, ...TpsFirst, ...TpsSecond; the same order of sums); out must be
    neither a nor b."""
    for i in range(3):
        for j in range(3):
            acc = 0.0
            for k in range(3):
                acc += (a[3 * k + i] if a_t else a[3 * i + k]) * (b[3 * j + k] if b_t else
                                                                  b[3 * k + j])
            out[3 * i + j] = acc


@njit(cache=True)
def _mat_inv(m, out):  # pragma: no cover - numba
    """out = the inverse of a row-major 3x3 matrix m by cofactors; zeros where m is singular
    (as VQF::matrix3Inv)."""
    a_ = m[4] * m[8] - m[5] * m[7]
    d_ = m[2] * m[7] - m[1] * m[8]
    g_ = m[1] * m[5] - m[2] * m[4]
    b_ = m[5] * m[6] - m[3] * m[8]
    e_ = m[0] * m[8] - m[2] * m[6]
    h_ = m[2] * m[3] - m[0] * m[5]
    c_ = m[3] * m[7] - m[4] * m[6]
    f_ = m[1] * m[6] - m[0] * m[7]
    i_ = m[0] * m[4] - m[1] * m[3]
    det = m[0] * a_ + m[1] * b_ + m[2] * c_
    if -EPS <= det <= EPS:
        out[:] = 0.0
        return
    out[0], out[1], out[2] = a_ / det, d_ / det, g_ / det
    out[3], out[4], out[5] = b_ / det, e_ / det, h_ / det
    out[6], out[7], out[8] = c_ / det, f_ / det, i_ / det
