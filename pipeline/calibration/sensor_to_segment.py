"""Sensor-to-segment rotations from a static pose and functional hinge motion (any mounting).

Static pose: the chain's neutral pose (all joint angles zero, root upright), or another still
pose the chain file names (``still_pose.py``; the knee's ``sitting``), held still; each
accelerometer then reads +9.81 m/s^2 along its segment's upward axis in that pose.
Functional motion: each hinge between two IMU-carrying segments moved through its range; the
hinge axis is found in both sensor frames from gyroscopes and accelerometers by Olsson et
al.'s estimator (Sensors 20(12) 3534, 2020; ``hinge_axis_fit.py``: motion that is not the
hinge's is left out). Gravity and the axis fix the full rotation (TRIAD). The axis signs are
chosen so that the hinge angles (from gravity and from the off-axis angular rates) stay
inside the joint's limits. IMUs without such a hinge get the static part only: their
heading about the vertical stays as mounted, and the calibration says so. With good
rotations, every joint with an IMU on both segments also gets its lever arms to both IMUs
(``joint_centre.py``).

Units: acc m/s^2, gyr rad/s, both in sensor frames; rotations ``v_segment = R @ v_sensor``,
quaternions w, x, y, z (sensor to segment).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.calibration.clock_offset import clock_offset
from pipeline.calibration.hinge_axis_fit import fit_hinge_axes
from pipeline.calibration.joint_centre import JointCentre, joint_centres, lever_turn_deg
from pipeline.calibration.phases import (
    Window,
    at_rest,
    motion_window,
    off_body,
    rest_candidates,
)
from pipeline.calibration.still_pose import (
    NEUTRAL,
    find_pose,
    pose_distance_deg,
    pose_names,
    pose_prompt,
    pose_up,
)
from pipeline.estimation.hinge import joint_levers, to_joint_centre
from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.fk import hinge_plane_basis
from pipeline.kinematics.quaternion import np_qto_matrix

log = logging.getLogger("imuflow.calibration")

G = 9.81
# quality limits: beyond these a calibration is reported as poor and not applied
MAX_REST_ACC_STD = 0.5          # m/s^2, spread of gravity over the static window
MAX_REST_GYR = 0.35             # rad/s, mean gyro norm over the static window
MIN_STATIC_S = 0.3              # s
MIN_HINGE_MOTION_RAD = 6.0      # rad, summed |relative rotation| about the axis (e.g. 5 flexions)
MAX_AXIS_GRAVITY_MISMATCH_DEG = 15.0  # axis-to-gravity angle: measured vs the chain's
MIN_HINGE_FIT = 0.7             # product of the in-limits fractions of both angle estimates
LIMIT_MARGIN_RAD = math.radians(20.0)
# a static window that is not the neutral pose (sitting, for a knee) shifts the hinge angles
# of the whole recording: a share of the still poses then lies beyond the joint's limits by
# more than any calibration error could put it; each 1 % of such poses costs a window 0.1
OUT_OF_RANGE_MARGIN_RAD = math.radians(5.0)
OUT_OF_RANGE_WEIGHT = 10.0
MAX_OUT_OF_RANGE_SHARE = 0.025  # of the still poses: more and the calibration is poor
SCORE_TOLERANCE = 0.05          # static windows scoring within this of the best: quietest wins
# a hinge axis this close to vertical in the neutral pose leaves the rotation about it unfixed
# by gravity (a robot arm's base or wrist joint): such a hinge gives its child static only
MIN_AXIS_TILT_DEG = 15.0
SIGN_TIE = 0.02  # in-limits scores this close: the sign pair is ambiguous
# deg: a calibration whose reading of the recording's still poses lies this much further from
# the chain's known still poses than another good calibration's is taken for a mirror image
# (simulated mirrors read 77-134 deg, the right calibrations 2-18; knee_tracking1's
# candidates 10-15)
MAX_POSE_DISTANCE_GAP_DEG = 30.0
# deg: both sensors of a hinge turned this much against another calibration make a mirror
# image of it (a half turn each, give or take the two windows' poses); a calibration that
# differs less (a quarter turn, as a lying pose read as sitting) is left alone, so that still
# poses the chain does not know (lying down for long) cannot drop the right one
MIRROR_TURN_DEG = 120.0
# deg: a good calibration whose fitted lever arms lie this much further from the chain's,
# about a hinge's axis, than another good one's takes a still pose the chain does not know
# (lying) for its own (simulated: 61-90 deg against 1-7; knee_tracking1's taken window: 11;
# the chain's IMU positions are guesses, a sensor strapped elsewhere turns its lever 20-50)
MAX_LEVER_TURN_GAP_DEG = 45.0
# deg: the taken calibration's lever arms turned this far get a note, not a verdict (a sensor
# strapped far from the chain's IMU position turns its lever 20-50 deg; a supine procedure
# taken as standing, 90 or more)
NOTE_LEVER_TURN_DEG = 60.0
# the two sensors of a single hinge named the wrong way round fit the hinge as well; their
# accelerations at the joint centre (lever arms from the chain) agree far worse: below this
# ratio of the swapped naming's residual to the given one's, the naming is reported
MAX_SWAPPED_RATIO = 0.6
# s: two sensors of a hinge whose clocks are further apart lose the joint's fast motion
# (knee_tracking1 with the shank 100 ms early: walking peaks up to 21 deg off RING's; 50 ms:
# 12 deg): beyond MAX the calibration is poor, beyond NOTE the report says so (the measure
# reads up to 20 ms off zero with the clocks aligned, so a note is no verdict)
MAX_CLOCK_OFFSET_S = 0.1
NOTE_CLOCK_OFFSET_S = 0.05


@dataclass
class SensorCalibration:
    """One IMU's sensor-to-segment rotation, how it was found and how good it is."""

    imu: str
    body: str
    rotation: np.ndarray                 # (4,) w, x, y, z, sensor -> segment
    method: str                          # "static+hinge" or "static"
    quality: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # each makes the calibration poor
    notes: list[str] = field(default_factory=list)     # worth knowing, not a verdict

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def matrix(self) -> np.ndarray:
        """3x3 rotation, ``v_segment = R @ v_sensor``."""
        return np.asarray(np_qto_matrix(self.rotation), dtype=np.float64)


@dataclass
class Calibration:
    """Sensor-to-segment rotations of a chain's IMUs, with the data they came from."""

    chain: str
    sensors: dict[str, SensorCalibration]
    rate_hz: float
    static: tuple[float, float]          # s from the first sample
    functional: tuple[float, float]      # s
    source: str = ""
    # the other still windows tried for the static pose (found automatically): (t0, t1) s,
    # score, and why each lost (its first problem, or its lower score)
    others: list[tuple[tuple[float, float], float, str]] = field(default_factory=list)
    # per joint with an IMU on both segments (child body name): the lever arms from its
    # centre to both IMUs, fitted over the whole recording once the rotations are good; a
    # joint found poorly lists problems there and leaves the rotations' ``ok`` alone
    joints: dict[str, JointCentre] = field(default_factory=dict)
    pose: str = NEUTRAL                  # the still pose the static window held

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sensors.values())

    def problems(self) -> list[str]:
        """Every problem, prefixed with the IMU's name."""
        return [f"{s.imu}: {p}" for s in self.sensors.values() for p in s.problems]

    def notes(self) -> list[str]:
        """Every note, prefixed with the IMU's name."""
        return [f"{s.imu}: {n}" for s in self.sensors.values() for n in s.notes]


class CalibrationError(ValueError):
    """The input cannot give a calibration at all (too short, missing sensors, no rest)."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def triad(v1_s: np.ndarray, v2_s: np.ndarray, v1_b: np.ndarray, v2_b: np.ndarray) -> np.ndarray:
    """Rotation R with R v1_s = v1_b exactly and R v2_s as close to v2_b as possible."""
    def frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        e1 = _unit(a)
        e2 = _unit(b - (b @ e1) * e1)
        return np.stack([e1, e2, np.cross(e1, e2)], axis=1)
    return frame(v1_b, v2_b) @ frame(v1_s, v2_s).T


def minimal_rotation(v_s: np.ndarray, v_b: np.ndarray) -> np.ndarray:
    """The smallest rotation R with R v_s = v_b (both unit vectors)."""
    a, b = _unit(v_s), _unit(v_b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = _unit(np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0]))
        return Rotation.from_rotvec(perp * math.pi).as_matrix()
    return Rotation.from_rotvec(axis / s * math.atan2(s, c)).as_matrix()


def to_quaternion(r: np.ndarray) -> np.ndarray:
    """w, x, y, z of a rotation matrix, w >= 0."""
    x, y, z, w = Rotation.from_matrix(r).as_quat()
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


@dataclass(frozen=True)
class HingePair:
    """A hinge joining two IMU-carrying bodies: parent IMU, child IMU, axis in both frames."""

    parent_imu: str
    child_imu: str
    parent_body: int
    child_body: int
    axis_child: np.ndarray     # unit, child body frame
    axis_parent: np.ndarray    # unit, parent body frame
    limits: tuple[float, float]  # rad (NaN when none)


def hinge_pairs(chain: Chain) -> list[HingePair]:
    """Every hinge whose two bodies each carry exactly one IMU."""
    imu_of: dict[int, list[str]] = {}
    for name, body in zip(chain.imu_names, chain.imu_bodies, strict=True):
        imu_of.setdefault(int(body), []).append(name)
    pairs = []
    for i in range(chain.n_bodies):
        p = int(chain.parents[i])
        if chain.joint_types[i] != JointType.HINGE or p < 0:
            continue
        if len(imu_of.get(i, [])) == 1 and len(imu_of.get(p, [])) == 1:
            axis = _unit(np.asarray(chain.axes[i], dtype=np.float64))
            axis_parent = np.asarray(np_qto_matrix(chain.rotations[i])) @ axis
            lo, hi = chain.limits[i]
            pairs.append(HingePair(imu_of[p][0], imu_of[i][0], p, i, axis, axis_parent,
                                   (float(lo), float(hi))))
    return pairs


def plane_angle(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(T,) angle (rad) of vectors v (T, 3) in the plane normal to ``axis``, right-handed
    about it."""
    e1, e2 = hinge_plane_basis(axis)
    return np.arctan2(v @ e2, v @ e1)


def hinge_angle_estimates(r1: np.ndarray, acc1: np.ndarray, gyr1: np.ndarray, r2: np.ndarray,
                          acc2: np.ndarray, gyr2: np.ndarray, axis_parent: np.ndarray,
                          axis_child: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hinge angle (rad) from gravity and from the gyros' off-axis rates; NaN where not seen.

    With ``child = parent * R_axis(theta)``, any vector's angle about the axis is smaller in
    the child's frame by theta. Gravity counts where both sensors are quasi-static (|acc|
    within 1.5 m/s^2 of g, gyro norms below 2 rad/s, gravity 25 deg or more off the axis);
    the angular rate's off-axis part where it exceeds 0.3 rad/s in both sensors. Under wrong
    axis signs one or both leave the joint limits.
    """
    a1, a2 = acc1 @ r1.T, acc2 @ r2.T
    w1, w2 = gyr1 @ r1.T, gyr2 @ r2.T
    n1, n2 = np.linalg.norm(a1, axis=1), np.linalg.norm(a2, axis=1)
    still = (np.abs(n1 - G) < 1.5) & (np.abs(n2 - G) < 1.5)
    still &= (np.linalg.norm(w1, axis=1) < 2.0) & (np.linalg.norm(w2, axis=1) < 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        still &= (np.abs(a1 @ axis_parent) / n1 < 0.9) & (np.abs(a2 @ axis_child) / n2 < 0.9)
    off1 = np.linalg.norm(w1 - np.outer(w1 @ axis_parent, axis_parent), axis=1)
    off2 = np.linalg.norm(w2 - np.outer(w2 @ axis_child, axis_child), axis=1)
    turning = (off1 > 0.3) & (off2 > 0.3)

    def wrap(x: np.ndarray) -> np.ndarray:
        return (x + math.pi) % (2 * math.pi) - math.pi
    theta_g = wrap(plane_angle(a1, axis_parent) - plane_angle(a2, axis_child))
    theta_w = wrap(plane_angle(w1, axis_parent) - plane_angle(w2, axis_child))
    return np.where(still, theta_g, np.nan), np.where(turning, theta_w, np.nan)


def in_limits_fraction(theta: np.ndarray, limits: tuple[float, float],
                       margin: float = LIMIT_MARGIN_RAD) -> float:
    """Fraction of the finite angles within the limits widened by ``margin`` (rad); 1.0
    without limits."""
    lo, hi = limits
    finite = theta[np.isfinite(theta)]
    if not len(finite) or math.isnan(lo) or math.isnan(hi):
        return 1.0
    return float(np.mean((finite >= lo - margin) & (finite <= hi + margin)))


def out_of_range_share(theta_g: np.ndarray, limits: tuple[float, float]) -> float:
    """Share of the still poses' hinge angles (rad, from gravity) beyond the limits by more
    than OUT_OF_RANGE_MARGIN_RAD: poses the joint cannot take."""
    return 1.0 - in_limits_fraction(theta_g, limits, OUT_OF_RANGE_MARGIN_RAD)


def sign_score(theta_g: np.ndarray, theta_w: np.ndarray, limits: tuple[float, float]) -> float:
    """How well hinge angle estimates fit the joint: product of their in-limits fractions."""
    return in_limits_fraction(theta_g, limits) * in_limits_fraction(theta_w, limits)


def extension_offset(theta: np.ndarray, limits: tuple[float, float]) -> float:
    """2nd percentile of the hinge angles (rad) minus zero clipped into the limits.

    A joint is straight (angle 0) in the neutral pose and returns near there during use
    (standing, walking); a static window that is not the neutral pose shifts the most
    extended angles seen away from zero. 0.0 when no angle was seen.
    """
    finite = theta[np.isfinite(theta)]
    if not len(finite):
        return 0.0
    lo, hi = limits
    zero = 0.0 if math.isnan(lo) or math.isnan(hi) else min(max(0.0, lo), hi)
    return float(np.percentile(finite, 2.0)) - zero


def _static_part(acc: np.ndarray, gyr: np.ndarray, window: Window) -> tuple[np.ndarray, dict, list]:
    """Mean gravity direction in the sensor frame over the window, quality figures, problems."""
    a, g = acc[window.slice], gyr[window.slice]
    g_mean = np.nanmean(a, axis=0)
    quality = {"rest_acc_std_ms2": float(np.nanmax(np.nanstd(a, axis=0))),
               "rest_gyr_rad_s": float(np.nanmean(np.linalg.norm(g, axis=1))),
               "rest_acc_norm_ms2": float(np.linalg.norm(g_mean))}
    problems = []
    if quality["rest_acc_std_ms2"] > MAX_REST_ACC_STD or quality["rest_gyr_rad_s"] > MAX_REST_GYR:
        problems.append(
            f"not still in the static pose (acc spread {quality['rest_acc_std_ms2']:.2f} m/s^2, "
            f"gyro {quality['rest_gyr_rad_s']:.2f} rad/s; limits {MAX_REST_ACC_STD} and "
            f"{MAX_REST_GYR}): hold the pose still for a few seconds")
    if abs(quality["rest_acc_norm_ms2"] - G) > 1.0:
        problems.append(f"gravity reads {quality['rest_acc_norm_ms2']:.2f} m/s^2 at rest, not "
                        f"{G}: check the accelerometer's units and range")
    return _unit(g_mean), quality, problems


def calibrate(chain: Chain, acc: dict[str, np.ndarray], gyr: dict[str, np.ndarray],
              rate_hz: float, static: Window | None = None,
              functional: Window | None = None, chain_name: str = "",
              source: str = "", pose: str | None = None) -> Calibration:
    """Sensor-to-segment rotations for every IMU of ``chain`` from one recording.

    ``acc`` and ``gyr`` map IMU names to (T, 3) arrays (m/s^2, rad/s, sensor frame, common
    time grid at ``rate_hz``). Without ``static``, the quiet windows of the recording are
    tried and the one whose hinge angles fit the joint best is taken (inside the limits, most
    extended poses near the straight joint); without
    ``functional``, all motion outside the static window. ``pose`` is the still pose the
    static window holds (``still_pose.py``); None: the neutral one, and when no still window
    of the recording fits it and ``static`` is not given, the chain's other poses. Raises
    CalibrationError when no calibration is possible at all (or ``pose`` is not the chain's);
    a poor one comes back with its problems listed.
    """
    missing = [m for m in chain.imu_names if m not in acc or m not in gyr]
    if missing:
        raise CalibrationError(f"no data for IMU(s) {missing}; the recording has "
                               f"{sorted(acc)} (rename sensors to the chain's IMU names)")
    n = min(len(acc[m]) for m in chain.imu_names)
    if n < round(2 * rate_hz):
        raise CalibrationError(f"recording too short for a calibration: {n / rate_hz:.1f} s; "
                               "record a static pose (3 s) and functional motion (10 s or more)")
    names = list(chain.imu_names)
    acc_all = {m: np.asarray(acc[m][:n], dtype=np.float64) for m in names}
    gyr_all = {m: np.asarray(gyr[m][:n], dtype=np.float64) for m in names}
    if pose is not None:
        try:
            find_pose(chain, pose)
        except ValueError as exc:
            raise CalibrationError(str(exc)) from None
    cal = _calibrate_named(chain, acc_all, gyr_all, rate_hz, static, functional, chain_name,
                           source, pose)
    pairs = hinge_pairs(chain)
    if cal.ok and len(names) == 2 and len(pairs) == 1:
        _check_swapped(chain, pairs[0], acc_all, gyr_all, rate_hz, static, functional, cal)
    for pair in pairs:
        _check_clock_offset(pair, gyr_all, cal, rate_hz)
    if cal.ok:
        if not cal.joints:  # not fitted yet while the candidates were compared
            cal.joints = joint_centres(chain, acc_all, gyr_all,
                                       {m: cal.sensors[m].matrix for m in names}, rate_hz)
        _note_turned_levers(chain, cal)
    else:
        cal.joints = {}  # lever arms only with good rotations
    return cal


def _note_turned_levers(chain: Chain, cal: Calibration) -> None:
    """Store how far the taken calibration turns the fitted lever arms from the chain's about
    a hinge's axis (quality ``lever_turn_deg``), with a note past NOTE_LEVER_TURN_DEG: a
    recording whose every still window lies down (a supine procedure) reads its knee angles
    right under a calibration that takes one for standing, and nothing else shows it."""
    turn = lever_turn_deg(chain, cal.joints)
    if not math.isfinite(turn):
        return
    last = cal.sensors[chain.imu_names[-1]]
    last.quality["lever_turn_deg"] = turn
    if turn > NOTE_LEVER_TURN_DEG:
        last.notes.append(
            f"the fitted joint centre lies {turn:.0f} deg about a hinge's axis from where the "
            f"chain puts it: if the still window was not {cal.pose} (lying down), the "
            "segments' inclination is about that far off while the joint angles are right; "
            f"calibrate from a {cal.pose} window (--static T0:T1), or check that each sensor "
            "sits where the chain's IMU positions say")


def _calibrate_named(chain: Chain, acc_all: dict, gyr_all: dict, rate_hz: float,
                     static: Window | None, functional: Window | None, chain_name: str,
                     source: str, pose: str | None) -> Calibration:
    """:func:`calibrate` with the sensors as named: the static window (given, or the best of
    the quiet ones) and its pose, the axes, the rotations."""
    stack = np.stack([gyr_all[m] for m in chain.imu_names], axis=1)
    acc_stack = np.stack([acc_all[m] for m in chain.imu_names], axis=1)
    if static is not None:
        candidates = [static]
    else:
        candidates = rest_candidates(stack, rate_hz, acc=acc_stack)
        if not candidates:
            raise CalibrationError(
                "no static pose found: no window of 0.5 s or more in which all sensors are "
                f"still (mean gyro norm < {MAX_REST_GYR} rad/s); hold the neutral pose still "
                "for a few seconds, or give the window with --static T0:T1")
    if len(candidates[0]) < MIN_STATIC_S * rate_hz:
        raise CalibrationError(f"static window too short: {len(candidates[0]) / rate_hz:.2f} s, "
                               f"need {MIN_STATIC_S} s or more")
    axes = _hinge_axes(chain, acc_all, gyr_all, functional, candidates[0], rate_hz)
    on_body = ~off_body(acc_stack, stack, rate_hz)

    found = pose is None and static is None  # the window and its pose found, not given
    results = [_calibrate_with(chain, acc_all, gyr_all, rate_hz, window, axes, on_body,
                               chain_name, source, p)
               for p in ([pose or NEUTRAL] + (pose_names(chain)[1:] if found else []))
               for window in candidates]
    if found:
        g_ok = np.all(np.abs(np.linalg.norm(acc_stack, axis=-1) - G) < 1.0, axis=1)
        # the levers first: a long lying stretch reads nearer the known still poses under a
        # calibration that takes it for standing than under the right one
        results = _turned_levers_dropped(chain, acc_all, gyr_all, rate_hz, results)
        results = _far_readings_dropped(chain, acc_all, results,
                                        at_rest(stack, rate_hz) & on_body & g_ok)
    shown = [r for r in results if r[0].pose == (pose or NEUTRAL)]
    chosen = _best(shown)
    if found and not chosen.ok:
        # no still window fits the neutral pose (a recording that never stands still): the
        # chain's other poses, as sitting, get their turn
        shown = results
        chosen = _best(shown)
    several = len({cal.pose for cal, _ in shown}) > 1  # then each line says which pose
    chosen.others = [(cal.static, score, (f"as {cal.pose}: " if several else "")
                      + (cal.problems()[0] if cal.problems() else ""))
                     for cal, score in shown if cal is not chosen]
    return chosen


def _far_readings_dropped(chain: Chain, acc: dict, results: list[tuple[Calibration, float]],
                          still: np.ndarray) -> list[tuple[Calibration, float]]:
    """``results`` with each good calibration that is the mirror image of another good one
    (both sensors of a hinge turned more than MIRROR_TURN_DEG from it) and whose reading of
    the recording's ``still`` (T,) poses lies more than MAX_POSE_DISTANCE_GAP_DEG further
    from the chain's known still poses marked poor (a problem on the chain's last IMU, score
    less 1). A still window at the far end of a hinge's range, taken as the neutral pose,
    reads the joint mirrored (angle = that end less the true angle) and fits the limits as
    well as the truth; it is told apart by what it makes of the other still poses: a
    standing shank upside down, a sitting thigh pointing backwards."""
    dist = [pose_distance_deg(chain, {m: s.matrix for m, s in cal.sensors.items()}, acc, still)
            if cal.ok else math.nan for cal, _ in results]
    if sum(math.isfinite(d) for d in dist) < 2:
        return results
    nearest_i = int(np.nanargmin(dist))
    nearest, reference = dist[nearest_i], results[nearest_i][0]

    def why(cal: Calibration, d: float) -> str:
        if d <= nearest + MAX_POSE_DISTANCE_GAP_DEG or not _mirrors(chain, cal, reference):
            return ""
        return (f"taken as {cal.pose}, this window makes the recording's still poses lie "
                f"{d:.0f} deg (median) from every still pose the chain knows "
                f"({', '.join(pose_names(chain))}), where another window's reading makes "
                f"them {nearest:.0f} deg: it is probably the far end of a joint's range, "
                "and the joint would read mirrored")
    return _marked(chain, results, dist, "still_pose_distance_deg", why)


def _turned_levers_dropped(chain: Chain, acc: dict, gyr: dict, rate_hz: float,
                           results: list[tuple[Calibration, float]]
                           ) -> list[tuple[Calibration, float]]:
    """``results`` with each good calibration whose joint-centre lever arms, fitted with its
    rotations, turn more than MAX_LEVER_TURN_GAP_DEG further from the chain's about a hinge's
    axis than another good one's marked poor (a problem on the chain's last IMU, score less
    1). A window lying still, taken as the neutral pose, reads every knee angle right but puts
    the segments a quarter turn about the knee's axis (a flexion peak taken so, a half turn:
    the mirror); the lever arms, which run along the segments whatever the mounting, show
    it."""
    def fitted_turn(cal: Calibration) -> float:
        # kept on the candidate: calibrate() then has the taken one's lever arms already
        cal.joints = joint_centres(chain, acc, gyr, {m: s.matrix for m, s in
                                                     cal.sensors.items()}, rate_hz)
        return lever_turn_deg(chain, cal.joints)

    turn = [fitted_turn(cal) if cal.ok else math.nan for cal, _ in results]
    if sum(math.isfinite(t) for t in turn) < 2:
        return results
    least = float(np.nanmin(turn))

    def why(cal: Calibration, t: float) -> str:
        if t <= least + MAX_LEVER_TURN_GAP_DEG:
            return ""
        return (f"taken as {cal.pose}, this window turns the joint centre {t:.0f} deg about "
                f"a hinge's axis from where the chain puts it, where another window's "
                f"calibration turns it {least:.0f} deg: this window probably holds another "
                f"pose than {cal.pose} (lying down, or the far end of a joint's range)")
    return _marked(chain, results, turn, "lever_turn_deg", why)


def _marked(chain: Chain, results: list[tuple[Calibration, float]], values: list[float],
            quality: str, why: Callable[[Calibration, float], str]
            ) -> list[tuple[Calibration, float]]:
    """``results`` with each finite ``values`` entry stored as quality ``quality`` on the
    chain's last IMU, and each candidate ``why`` gives a reason for marked poor (the reason a
    problem there, its score less 1)."""
    out = []
    for (cal, score), value in zip(results, values, strict=True):
        if math.isfinite(value):
            last = cal.sensors[chain.imu_names[-1]]
            last.quality[quality] = value
            reason = why(cal, value)
            if reason:
                last.problems.append(reason)
                score -= 1.0
        out.append((cal, score))
    return out


def _mirrors(chain: Chain, cal: Calibration, other: Calibration) -> bool:
    """Whether both sensors of some hinge are turned more than MIRROR_TURN_DEG in ``cal``
    against ``other``."""
    def turn(imu: str) -> float:
        r = cal.sensors[imu].matrix.T @ other.sensors[imu].matrix
        return math.degrees(math.acos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))
    return any(turn(p.parent_imu) > MIRROR_TURN_DEG and turn(p.child_imu) > MIRROR_TURN_DEG
               for p in hinge_pairs(chain))


def _best(results: list[tuple[Calibration, float]]) -> Calibration:
    """The quietest candidate (they come quietest first, per pose) whose score is near the
    best one."""
    top = max(score for _, score in results)
    return next(cal for cal, score in results if score >= top - SCORE_TOLERANCE)


def joint_centre_residual(chain: Chain, pair: HingePair, acc: dict, gyr: dict,
                          cal: Calibration, rate_hz: float) -> float:
    """rms (m/s^2) over the functional motion of the difference between the norms of both
    sensors' specific forces moved to the hinge's centre (calibrated rotations, lever arms from
    the chain's IMU positions). The centre is a point of both segments: with each sensor on
    the segment the chain puts it on, and near its position there, the norms agree."""
    sites = {name: k for k, name in enumerate(chain.imu_names)}
    levers = joint_levers(chain, pair.child_body, sites[pair.parent_imu], sites[pair.child_imu])
    window = slice(round(cal.functional[0] * rate_hz), round(cal.functional[1] * rate_hz))
    norms = []
    for imu, lever in zip((pair.parent_imu, pair.child_imu), levers, strict=True):
        r = cal.sensors[imu].matrix
        a = np.ascontiguousarray(acc[imu][window] @ r.T)
        g = np.ascontiguousarray(gyr[imu][window] @ r.T)
        f = np.empty_like(a)
        to_joint_centre(a, g, lever, np.full(3, np.nan), 1.0 / rate_hz, f)
        norms.append(np.linalg.norm(f, axis=1))
    return float(np.sqrt(np.nanmean((norms[0] - norms[1]) ** 2)))


def _check_swapped(chain: Chain, pair: HingePair, acc: dict, gyr: dict, rate_hz: float,
                   static: Window | None, functional: Window | None, cal: Calibration) -> None:
    """Calibrate again with the two sensors' data swapped; when the joint centre's
    accelerations agree far better that way, the sensors were named the wrong way round:
    a problem on ``cal`` (a hinge's angles cannot tell, they fit as well either way)."""
    a, b = pair.parent_imu, pair.child_imu
    swapped = _calibrate_named(chain, {a: acc[b], b: acc[a]}, {a: gyr[b], b: gyr[a]}, rate_hz,
                               static, functional, cal.chain, cal.source, cal.pose)
    given = joint_centre_residual(chain, pair, acc, gyr, cal, rate_hz)
    cal.sensors[b].quality["joint_centre_residual_ms2"] = given
    if not swapped.ok:
        return
    other = joint_centre_residual(chain, pair, {a: acc[b], b: acc[a]}, {a: gyr[b], b: gyr[a]},
                                  swapped, rate_hz)
    cal.sensors[b].quality["swapped_residual_ms2"] = other
    if other < MAX_SWAPPED_RATIO * given:
        cal.sensors[b].problems.append(
            f"the sensors look swapped: with {a}'s data on {b} and {b}'s on {a} the "
            f"accelerations at the joint centre agree far better ({other:.1f} against "
            f"{given:.1f} m/s^2 rms); name them the other way round (imuflow import --name "
            "OLD=NEW, or the graph's sensors:)")


def _check_clock_offset(pair: HingePair, gyr: dict, cal: Calibration, rate_hz: float) -> None:
    """The child sensor's clock against the parent's, from their rates off the hinge axis
    over the functional motion (``clock_offset.py``): quality figures on the child, a problem
    when they are more than MAX_CLOCK_OFFSET_S apart, a note beyond NOTE_CLOCK_OFFSET_S."""
    a, b = pair.parent_imu, pair.child_imu
    s1, s2 = cal.sensors[a], cal.sensors[b]
    if "hinge" not in s1.method or "hinge" not in s2.method:
        return
    window = slice(round(cal.functional[0] * rate_hz), round(cal.functional[1] * rate_hz))
    offset, corr = clock_offset(gyr[a][window], gyr[b][window], s1.matrix.T @ pair.axis_parent,
                                s2.matrix.T @ pair.axis_child, rate_hz)
    s2.quality["clock_offset_ms"] = offset * 1e3
    s2.quality["clock_offset_corr"] = corr
    if abs(offset) > MAX_CLOCK_OFFSET_S:
        s2.problems.append(clock_offset_advice(a, b, offset))
    elif abs(offset) > NOTE_CLOCK_OFFSET_S:
        s2.notes.append(clock_offset_advice(a, b, offset))


def clock_offset_advice(parent: str, child: str, offset: float) -> str:
    """What a clock offset of ``offset`` s (``clock_offset``'s sign) means and how to fix it."""
    return (f"{child}'s samples are stamped {abs(offset) * 1e3:.0f} ms "
            f"{'early' if offset > 0 else 'late'} against {parent}'s (their rates off the hinge "
            "axis line up there): the two sensors' clocks look that far apart; synchronise the "
            f"sensors before recording, or shift {child}'s data on import (imuflow import "
            f"--shift {child}={offset:+.3f})")


def _hinge_axes(chain: Chain, acc: dict, gyr: dict, functional: Window | None,
                static: Window, rate_hz: float) -> dict[str, tuple]:
    """Per hinge pair (child IMU name): the functional window, the axis fit over it
    (``hinge_axis_fit.py``; None for a window under 1 s) and the motion about the hinge (rad)."""
    out = {}
    stack = np.stack([gyr[m] for m in chain.imu_names], axis=1)
    window = functional or motion_window(stack, rate_hz, exclude=static)
    for pair in hinge_pairs(chain):
        sl = window.slice
        if len(window) < round(1.0 * rate_hz):
            out[pair.child_imu] = (window, None, 0.0)
            continue
        fit = fit_hinge_axes(acc[pair.parent_imu][sl], gyr[pair.parent_imu][sl],
                             acc[pair.child_imu][sl], gyr[pair.child_imu][sl], rate_hz)
        # relative rotation about the hinge (rad): the axis signs are not known yet, so the
        # smaller of the two candidate relative rates counts
        w1, w2 = gyr[pair.parent_imu][sl] @ fit.j1, gyr[pair.child_imu][sl] @ fit.j2
        amount = min(float(np.nansum(np.abs(w2 - w1))), float(np.nansum(np.abs(w2 + w1))))
        out[pair.child_imu] = (window, fit, amount / rate_hz)
    return out


def _calibrate_with(chain: Chain, acc: dict, gyr: dict, rate_hz: float, static: Window,
                    axes: dict, on_body: np.ndarray, chain_name: str,
                    source: str, pose: str) -> tuple[Calibration, float]:
    """Calibration with this static window holding ``pose``, and its score over the hinges
    (higher is better).

    The hinge angles that choose the axis signs and score the window are those of the samples
    ``on_body`` (T,) marks (not of sensors lying on a table, ``phases.off_body``) that the
    hinge's axis fit did not leave out as another motion.

    Score per hinge: how well the angles fit the joint (``sign_score``) less the extension
    offset (``extension_offset``, rad / pi) and OUT_OF_RANGE_WEIGHT times the share of still
    poses the joint cannot take (``out_of_range_share``); less 1 when any sensor has a problem.
    """
    up = pose_up(chain, pose)
    held = f"the {pose} pose"
    held_as = f"{held} ({pose_prompt(chain, pose)})"
    instead = " (e.g. sitting instead of standing)" if pose == NEUTRAL else ""
    sensors: dict[str, SensorCalibration] = {}
    gravity: dict[str, np.ndarray] = {}
    for name, body in zip(chain.imu_names, chain.imu_bodies, strict=True):
        g_s, quality, problems = _static_part(acc[name], gyr[name], static)
        gravity[name] = g_s
        r = minimal_rotation(g_s, up[body])
        sensors[name] = SensorCalibration(name, chain.body_names[body], to_quaternion(r),
                                          "static", quality, problems)
    scores = []
    functional = (0.0, 0.0)
    # rotations already fixed by a hinge nearer the root: a segment between two hinges (a
    # shank between knee and ankle) keeps the first one's, so both hinges agree on it; the
    # second hinge then only picks its child's axis sign (where its limits are nearly
    # symmetric, as an ankle's, the four sign pairs alone could not tell the right one from
    # both segments turned half a turn about the vertical)
    fixed: dict[str, np.ndarray] = {}
    for pair in hinge_pairs(chain):  # chain order: parents before children
        window, fit, amount = axes[pair.child_imu]
        j1, j2 = (fit.j1, fit.j2) if fit else (None, None)
        # the hinge angles that score: sensors on the body, and not the motion the axis fit
        # left out as no hinge's
        scored = on_body.copy()
        if fit:
            scored[window.slice] &= fit.used
        functional = window.seconds(rate_hz)
        s1, s2 = sensors[pair.parent_imu], sensors[pair.child_imu]
        for s in (s1, s2):
            s.quality.update({"axis_fit_residual_rad_s": fit.residual if fit else math.nan,
                              "hinge_motion_rad": amount,
                              "axis_fit_left_out_s": fit.left_out_s if fit else 0.0,
                              "off_body_s": float(np.count_nonzero(~on_body)) / rate_hz})
        if j1 is None or amount < MIN_HINGE_MOTION_RAD:
            s2.problems.append(
                f"too little motion about the hinge {s1.body}->{s2.body} "
                f"({amount:.1f} rad of relative rotation, need {MIN_HINGE_MOTION_RAD}): move the "
                "joint through its range several times (e.g. flex and extend five times)")
            continue
        up1, up2 = up[pair.parent_body], up[pair.child_body]
        tilt = math.degrees(math.acos(min(abs(pair.axis_child @ up2), 1.0)))
        s2.quality["axis_from_vertical_deg"] = tilt
        if tilt < MIN_AXIS_TILT_DEG:  # static only for the child; the parent keeps its own
            continue
        for s, g_s, j_s, a_b, up_b in ((s1, gravity[s1.imu], j1, pair.axis_parent, up1),
                                       (s2, gravity[s2.imu], j2, pair.axis_child, up2)):
            want = math.degrees(math.acos(np.clip(a_b @ up_b, -1, 1)))
            got = math.degrees(math.acos(np.clip(abs(j_s @ g_s), -1, 1)))
            got = min(got, 180.0 - got) if want <= 90 else max(got, 180.0 - got)
            mismatch = abs(got - min(want, 180 - want))
            # a parent whose rotation a hinge nearer the root fixed keeps that hinge's figure:
            # this hinge's fit only decides the child, which carries the finding
            owner, key = ((s2, "parent_axis_gravity_mismatch_deg") if s is s1 and s1.imu in fixed
                          else (s, "axis_gravity_mismatch_deg"))
            owner.quality[key] = mismatch
            if mismatch > MAX_AXIS_GRAVITY_MISMATCH_DEG:
                owner.problems.append(
                    f"the hinge axis {s1.body}->{s2.body} is {got:.0f} deg from gravity in "
                    f"{s.imu}'s static pose, the chain says {min(want, 180 - want):.0f} deg: the "
                    f"static pose was not {held_as}, or the motion was about another axis")
        best, scores_by_sign = None, {}
        a1, w1, a2, w2 = (x[scored] for x in (acc[s1.imu], gyr[s1.imu], acc[s2.imu],
                                               gyr[s2.imu]))
        for sign1 in ((1.0,) if s1.imu in fixed else (1.0, -1.0)):
            for sign2 in (1.0, -1.0):
                # the axis (from the gyros, free of accelerometer bias) is kept exactly
                r1 = fixed.get(s1.imu)
                if r1 is None:
                    r1 = triad(sign1 * j1, gravity[s1.imu], pair.axis_parent, up1)
                r2 = triad(sign2 * j2, gravity[s2.imu], pair.axis_child, up2)
                if not (np.isfinite(r1).all() and np.isfinite(r2).all()):
                    continue  # a measured axis along the measured gravity: no rotation
                theta_g, theta_w = hinge_angle_estimates(r1, a1, w1, r2, a2, w2,
                                                         pair.axis_parent, pair.axis_child)
                frac = sign_score(theta_g, theta_w, pair.limits)
                scores_by_sign[sign1, sign2] = frac
                if best is None or frac > best[0] + 1e-9:
                    best = (frac, r1, r2, extension_offset(theta_g, pair.limits),
                            out_of_range_share(theta_g, pair.limits), sign1, sign2)
        if best is None:
            s2.problems.append(
                f"the hinge axis {s1.body}->{s2.body} came out along gravity in the static "
                "pose, so the rotation about it is unknown: hold the neutral pose still, then "
                "move only this joint")
            continue
        frac, r1, r2, offset, out_of_range, sign1, sign2 = best
        # both signs flipped turns both segments half a turn about the vertical and negates the
        # hinge angle: only the joint's limits tell the two apart, not symmetric ones
        twin = scores_by_sign.get((-sign1, -sign2), -math.inf)
        if twin >= frac - SIGN_TIE:
            s2.problems.append(
                f"the hinge {s1.body}->{s2.body} fits its limits as well with both axis signs "
                f"flipped ({twin:.2f} against {frac:.2f}; limits {pair.limits[0]:.2f} to "
                f"{pair.limits[1]:.2f} rad): the segments may be half a turn off about the "
                "vertical; move the joint towards the end of its range that the other sign "
                "cannot reach, or give the rotation in the chain's IMU `rotation:`")
        s1.rotation, s2.rotation = to_quaternion(r1), to_quaternion(r2)
        s1.method = s2.method = "static+hinge"
        fixed[s1.imu], fixed[s2.imu] = r1, r2
        s2.quality["hinge_fit"] = frac
        if frac < MIN_HINGE_FIT:
            s2.problems.append(
                f"the hinge angles this calibration gives fit the joint poorly (in-limits score "
                f"{frac:.2f}, need {MIN_HINGE_FIT}): the static pose was probably not {held_as}, "
                "or the sensors slipped")
        s2.quality["extension_offset_deg"] = math.degrees(offset)
        s2.quality["out_of_range_share"] = out_of_range
        if out_of_range > MAX_OUT_OF_RANGE_SHARE:
            s2.problems.append(
                f"{out_of_range:.0%} of the still poses put the hinge {s1.body}->{s2.body} more "
                f"than {math.degrees(OUT_OF_RANGE_MARGIN_RAD):.0f} deg beyond its limits "
                f"({math.degrees(pair.limits[0]):.0f} to {math.degrees(pair.limits[1]):.0f} deg): "
                f"the static pose was probably not {held}{instead}; give the window of {held} "
                "with --static T0:T1"
                + (f", or name the pose it held with --pose ({', '.join(pose_names(chain))})"
                   if chain.poses else ""))
        scores.append(frac - abs(offset) / math.pi - OUT_OF_RANGE_WEIGHT * out_of_range)
    score = float(np.mean(scores)) if scores else 1.0
    if any(s.problems for s in sensors.values()):  # a window that was not still loses
        score -= 1.0
    cal = Calibration(chain_name, sensors, rate_hz, static.seconds(rate_hz), functional, source,
                      pose=pose)
    return cal, score
