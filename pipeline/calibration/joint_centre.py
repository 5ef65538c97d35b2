"""Joint centres from the sensors: each IMU's lever arm to a joint it shares with a neighbour.

Seel, Schauer, Raisch, "Joint axis and position estimation from inertial measurement data by
exploiting kinematic constraints", IEEE CCA 2012: a joint's centre is a point of both
segments, so the specific force there, moved from either segment's IMU over its lever arm
(``f_c = f - w x (w x r) - dw/dt x r``, ``r`` from the centre to the IMU), has the same norm
seen from both sides. A Gauss-Newton fit of both lever arms over the recording's motion makes
the two norms agree (Huber-weighted, so heel strikes and taps do not lead it; a pull towards
the chain's lever arms keeps directions the motion does not show where the chain puts them,
as when a calibration procedure moves one segment only). For a hinge every point of its axis
is such a point: the fit is moved along the axis to the point nearest both sensors (Seel
2012's choice).

The constraint observer moves accelerations to a hinge's centre with these lever arms and
pulls a spherical joint's heading with them (``hinge.to_joint_centre``, ``ball_joint.py``);
the chain's IMU positions are guesses of where a user strapped the sensors.

Units: acc m/s^2, gyr rad/s, both in segment frames (a calibration's rotations applied);
lever arms m, in the segment frame of the IMU they lead to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, filtfilt

from pipeline.estimation.hinge import joint_levers
from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.quaternion import np_qto_matrix

CUTOFF_HZ = 10.0         # low-pass of acc and gyr before dw/dt is differentiated (zero phase)
HUBER_MS2 = 1.0          # m/s^2: residuals beyond weigh less (IRLS)
# (m/s^2 / m)^2 per sample: the pull towards the chain's lever arms. Walking or random limb
# motion shows both lever arms (a fit within 0.5 cm whether this is 0.01 or 2); a calibration
# procedure that flexes the knee under a nearly still thigh shows the thigh's barely, and at
# 0.01 its fit wandered up to 1.4 m off (at 2: within 1-2 cm of the chain's guess or better)
PRIOR_WEIGHT = 2.0
ITERATIONS = 30
MIN_MOTION_RAD_S = 0.5   # rms angular rate of the faster segment below: too little motion
MAX_LEVER_M = 0.6        # a sensor farther from the joint than this is not on a body segment
# m/s^2: rms norm difference at the best fit above this, and no point is common to both
# segments (0.3-0.7 in simulation and on knee_tracking1; two unrelated recordings: 6)
MAX_RESIDUAL_MS2 = 2.5
MIN_SAMPLES = 200
MAX_SAMPLES = 30_000     # a longer recording is fitted on every k-th sample (time per joint)
MIN_PLANE_LEVER_M = 0.05  # lever arms shorter than this across a hinge's axis have no direction


@dataclass
class JointCentre:
    """The lever arms of one joint's two IMUs, how they were found and how good they are."""

    joint: str                           # the child body's name (its joint to its parent)
    imus: tuple[str, str]                # parent's IMU, child's IMU
    levers: np.ndarray                   # (2, 3) m: centre to parent IMU, centre to child IMU
    chain_levers: np.ndarray             # (2, 3) m: the same from the chain's IMU positions
    quality: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def shared_joints(chain: Chain) -> list[tuple[int, int, int]]:
    """(child body, parent's IMU site, child's IMU site) of every hinge and spherical joint
    with an IMU on both of its segments, in chain order (each body's first IMU)."""
    site_of: dict[int, int] = {}
    for site, body in enumerate(chain.imu_bodies):
        site_of.setdefault(int(body), site)
    out = []
    for body in range(1, chain.n_bodies):
        parent = int(chain.parents[body])
        if (chain.joint_types[body] in (JointType.HINGE, JointType.SPHERICAL)
                and body in site_of and parent in site_of):
            out.append((body, site_of[parent], site_of[body]))
    return out


def joint_centres(chain: Chain, acc: dict[str, np.ndarray], gyr: dict[str, np.ndarray],
                  rotations: dict[str, np.ndarray], rate_hz: float) -> dict[str, JointCentre]:
    """Per joint with an IMU on both segments (child body name): its lever arms fitted over
    the whole recording. ``acc``, ``gyr``: (T, 3) per IMU name in sensor frames on one grid at
    ``rate_hz``; ``rotations``: 3x3 sensor-to-segment per IMU name (the calibration's)."""
    out = {}
    for body, p_site, c_site in shared_joints(chain):
        names = (chain.imu_names[p_site], chain.imu_names[c_site])
        seg = [(acc[n] @ rotations[n].T, gyr[n] @ rotations[n].T) for n in names]
        prior = joint_levers(chain, body, p_site, c_site)
        axes = _hinge_axes(chain, body) if chain.joint_types[body] == JointType.HINGE else None
        out[chain.body_names[body]] = fit_joint_centre(
            chain.body_names[body], names, seg[0], seg[1], rate_hz, prior, axes)
    return out


def _hinge_axes(chain: Chain, body: int) -> np.ndarray:
    """(2, 3) the unit axis of ``body``'s hinge in its parent's frame and in its own."""
    axis = np.asarray(chain.axes[body], dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    rot = np.asarray(np_qto_matrix(np.asarray(chain.rotations[body], np.float64)))
    return np.stack([rot @ axis, axis])


def lever_turn_deg(chain: Chain, centres: dict[str, JointCentre]) -> float:
    """Largest angle (deg) about a hinge's axis between a fitted lever arm and the chain's,
    over the hinges fitted without problems; NaN when there is none.

    A lever arm runs along its segment whatever the sensor's mounting, so a calibration a
    quarter turn off about a hinge's axis (a lying pose taken for standing) turns the levers
    the motion shows by as much. Levers the motion barely shows stay near the chain's (the
    fit's pull), so the largest angle is the telling one.
    """
    worst = math.nan
    for name, centre in centres.items():
        body = chain.body_names.index(name)
        if centre.problems or chain.joint_types[body] != JointType.HINGE:
            continue
        for lever, prior, axis in zip(centre.levers, centre.chain_levers,
                                      _hinge_axes(chain, body), strict=True):
            flat = [v - (v @ axis) * axis for v in (lever, prior)]
            if min(np.linalg.norm(v) for v in flat) < MIN_PLANE_LEVER_M:
                continue  # a sensor near the axis line: no direction to compare
            cos = flat[0] @ flat[1] / (np.linalg.norm(flat[0]) * np.linalg.norm(flat[1]))
            turn = math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))
            worst = turn if math.isnan(worst) else max(worst, turn)
    return worst


def fit_joint_centre(joint: str, imus: tuple[str, str], parent: tuple[np.ndarray, np.ndarray],
                     child: tuple[np.ndarray, np.ndarray], rate_hz: float, prior: np.ndarray,
                     axes: np.ndarray | None = None) -> JointCentre:
    """One joint's lever arms from (acc, gyr) of its parent's and child's IMU (segment frames,
    (T, 3) each, NaN where a sensor was missing); ``prior`` (2, 3) m the chain's; ``axes``
    (2, 3) a hinge's axis in both frames (None: a spherical joint)."""
    a_p, k_p, a_c, k_c = _signals(parent, child, rate_hz)
    samples = len(a_p)  # with both sensors
    if samples > MAX_SAMPLES:
        every = -(-samples // MAX_SAMPLES)
        a_p, k_p, a_c, k_c = a_p[::every], k_p[::every], a_c[::every], k_c[::every]
    prior = np.asarray(prior, dtype=np.float64)
    result = JointCentre(joint, imus, prior.copy(), prior.copy())
    rates = [float(np.sqrt(np.mean(np.sum(g ** 2, axis=1)))) if len(g) else 0.0
             for g in (_finite_rows(parent[1]), _finite_rows(child[1]))]
    result.quality.update(samples=float(samples), motion_rad_s=max(rates))
    if samples < MIN_SAMPLES or max(rates) < MIN_MOTION_RAD_S:
        result.problems.append(
            f"too little motion to find the joint centre ({samples / rate_hz:.1f} s with "
            f"both sensors, rms rate {max(rates):.2f} rad/s, need {MIN_MOTION_RAD_S}): move "
            "the joint and the limb for 10 s or more; the chain's IMU positions stay in use")
        return result
    x = _gauss_newton(a_p, k_p, a_c, k_c, prior.ravel())
    levers = x.reshape(2, 3)
    if axes is not None:  # any point of a hinge's axis fits: the one nearest both sensors
        shift = 0.5 * (levers[0] @ axes[0] + levers[1] @ axes[1])
        levers = levers - shift * axes
    result.levers = levers
    result.quality.update(
        residual_ms2=_rms(a_p, k_p, a_c, k_c, levers.ravel()),
        residual_chain_ms2=_rms(a_p, k_p, a_c, k_c, prior.ravel()),
        parent_lever_m=float(np.linalg.norm(levers[0])),
        child_lever_m=float(np.linalg.norm(levers[1])),
        moved_m=float(np.max(np.linalg.norm(levers - prior, axis=1))))
    far = max(result.quality["parent_lever_m"], result.quality["child_lever_m"])
    residual = result.quality["residual_ms2"]
    if residual > MAX_RESIDUAL_MS2:
        result.problems.append(
            f"the two sensors' accelerations agree at no point ({residual:.1f} m/s^2 rms at the "
            f"best fit, more than {MAX_RESIDUAL_MS2}): a sensor may be loose or on another "
            "segment than the chain says; the chain's IMU positions stay in use")
    elif far > MAX_LEVER_M:
        result.problems.append(
            f"the fit puts a sensor {far:.2f} m from the joint (more than {MAX_LEVER_M} m): "
            "check that each sensor is on the segment the chain says; the chain's IMU "
            "positions stay in use")
    return result


def _finite_rows(v: np.ndarray) -> np.ndarray:
    return v[np.isfinite(v).all(axis=1)]


def _signals(parent: tuple[np.ndarray, np.ndarray], child: tuple[np.ndarray, np.ndarray],
             rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Low-passed acc (n, 3) and the lever matrices K (n, 3, 3) of both IMUs
    (``K r = w x (w x r) + dw/dt x r``) at the samples where both sensors and their
    neighbours are finite."""
    data = [np.asarray(v, dtype=np.float64) for v in (*parent, *child)]
    ok = np.logical_and.reduce([np.isfinite(v).all(axis=1) for v in data])
    if ok.sum() < 2:
        empty = np.zeros((0, 3))
        return empty, np.zeros((0, 3, 3)), empty, np.zeros((0, 3, 3))
    idx = np.arange(len(ok))
    filled = [np.stack([np.interp(idx, idx[ok], v[ok, i]) for i in range(3)], 1) for v in data]
    b, a = butter(2, min(CUTOFF_HZ, 0.4 * rate_hz) / (0.5 * rate_hz))
    smooth = [filtfilt(b, a, v, axis=0) for v in filled]
    keep = ok & np.roll(ok, 1) & np.roll(ok, -1)  # not next to a gap (interpolated there)
    keep[[0, -1]] = False
    out = []
    for acc_s, gyr_s in ((smooth[0], smooth[1]), (smooth[2], smooth[3])):
        w = gyr_s
        dw = np.gradient(w, 1.0 / rate_hz, axis=0)
        sw = _skew(w)
        out += [acc_s[keep], (sw @ sw + _skew(dw))[keep]]
    return out[0], out[1], out[2], out[3]


def _skew(v: np.ndarray) -> np.ndarray:
    """(n, 3, 3) cross-product matrices of (n, 3) vectors."""
    s = np.zeros((len(v), 3, 3))
    s[:, 0, 1], s[:, 0, 2], s[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    s[:, 1, 0], s[:, 2, 0], s[:, 2, 1] = v[:, 2], -v[:, 1], v[:, 0]
    return s


def _norms(a_p, k_p, a_c, k_c, x):
    u = a_p - k_p @ x[:3]
    v = a_c - k_c @ x[3:]
    return u, v, np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)


def _rms(a_p, k_p, a_c, k_c, x) -> float:
    _, _, nu, nv = _norms(a_p, k_p, a_c, k_c, x)
    return float(np.sqrt(np.mean((nu - nv) ** 2)))


def _gauss_newton(a_p, k_p, a_c, k_c, x0: np.ndarray) -> np.ndarray:
    """Both lever arms (6,) m minimising the Huber-weighted norm differences, pulled weakly
    towards ``x0``."""
    x = x0.copy()
    prior = PRIOR_WEIGHT * len(a_p)
    for _ in range(ITERATIONS):
        u, v, nu, nv = _norms(a_p, k_p, a_c, k_c, x)
        nu, nv = np.maximum(nu, 1e-9), np.maximum(nv, 1e-9)
        e = nu - nv
        jac = np.concatenate([-np.einsum("ki,kij->kj", u / nu[:, None], k_p),
                              np.einsum("ki,kij->kj", v / nv[:, None], k_c)], axis=1)
        w = np.minimum(1.0, HUBER_MS2 / np.maximum(np.abs(e), 1e-12))
        h = (jac * w[:, None]).T @ jac + prior * np.eye(6)
        step = -np.linalg.solve(h, (jac * w[:, None]).T @ e + prior * (x - x0))
        x = x + step
        if math.sqrt(float(step @ step)) < 1e-6:
            break
    return x
