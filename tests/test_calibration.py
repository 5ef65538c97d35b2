"""Sensor-to-segment calibration on simulated procedures with random full-SO(3) mountings."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from nodes.constraint_observer import ConstraintObserver
from nodes.filter import Filter
from pipeline.calibration import CalibrationError, calibrate, load_rotations, write_calibration
from pipeline.calibration.phases import Window, off_body, parse_window, rest_candidates
from pipeline.calibration.procedure import procedure_phases, report_lines
from pipeline.calibration.session_input import calibrate_samples
from pipeline.calibration.still_pose import pose_distance_deg
from pipeline.kinematics.calibration_motion import (
    calibration_motion,
    randomly_mounted,
    simulated_procedure,
)
from pipeline.kinematics.chain import Chain, JointType, load_chain
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate
from pipeline.kinematics.motion import Channel, Motion, MotionSettings, generate_motion
from pipeline.kinematics.quaternion import np_qto_matrix
from pipeline.recording.resample import raw_on_grid
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import RAW_IMU_DTYPE, frame_dtype, frame_info
from pipeline.runtime.testing import make_block

REPO = Path(__file__).resolve().parents[1]
KNEE = REPO / "configs/chains/knee.yaml"
RATE = 100.0


def rotation_error_deg(chain: Chain, cal) -> list[float]:
    """Angle between each estimated and true sensor-to-segment rotation, deg."""
    out = []
    for site in chain.imus:
        true = np.asarray(np_qto_matrix(np.asarray(site.rotation)))
        est = cal.sensors[site.name].matrix
        out.append(math.degrees(math.acos(np.clip((np.trace(est.T @ true) - 1) / 2, -1, 1))))
    return out


@pytest.fixture(scope="module")
def knee() -> Chain:
    return load_chain(KNEE)


def test_random_mountings_median_error_within_3_deg(knee: Chain) -> None:
    errors = []
    for seed in range(50):
        chain = randomly_mounted(knee, seed)
        acc, gyr = simulated_procedure(chain, seed, RATE)
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok, (seed, cal.problems())
        assert cal.static[0] < 3.2, (seed, cal.static)  # the neutral pose: motion starts at 3.5 s
        assert not any("joint centre lies" in n for n in cal.notes()), (seed, cal.notes())
        errors += rotation_error_deg(chain, cal)
    errors = np.asarray(errors)
    assert np.median(errors) <= 3.0, np.percentile(errors, [50, 90, 100])
    assert errors.max() < 20.0, errors.max()  # no axis sign flipped (that is 180 deg)


def test_segments_between_two_hinges_keep_one_rotation_on_the_lower_body() -> None:
    """A shank sits between knee and ankle: both hinges must agree on its rotation. The ankle's
    nearly symmetric limits alone cannot tell its axis signs from both segments turned half a
    turn about the vertical (before the fix: 9 of 20 shanks and feet off by ~180 deg, silently)."""
    body = load_chain(REPO / "configs/chains/lower_body.yaml")
    errors = {}
    for seed in range(4):
        chain = randomly_mounted(body, 100 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, static_s=4.0)
        cal = calibrate(chain, acc, gyr, RATE)
        for site, err in zip(chain.imus, rotation_error_deg(chain, cal), strict=True):
            if site.name != "pelvis":  # no hinge: heading as mounted (static only)
                errors.setdefault(site.name.split("_")[0], []).append(err)
    assert max(max(v) for v in errors.values()) < 20.0, errors  # no half turn anywhere
    assert np.median(errors["shank"]) < 3.0 and np.median(errors["thigh"]) < 3.0, errors


def test_symmetric_limits_and_vertical_axes_are_reported_not_guessed() -> None:
    """arm5 (a robot arm): hinges with symmetric limits cannot tell an axis sign pair from both
    segments half a turn about the vertical, and a hinge axis that is vertical in the neutral
    pose leaves the rotation about it to gravity, which cannot fix it. Reported as poor (the
    filter refuses it), where before the one mounting crashed with a LinAlgError in SVD and
    the others came out up to 180 deg off without a word."""
    chain = randomly_mounted(load_chain(REPO / "configs/chains/arm5.yaml"), 200)
    acc, gyr = simulated_procedure(chain, 0, RATE, static_s=4.0)
    cal = calibrate(chain, acc, gyr, RATE)
    assert not cal.ok
    assert any("as well with both axis signs flipped" in p for p in cal.problems()), cal.problems()
    assert cal.sensors["link4"].quality["axis_from_vertical_deg"] < 1.0  # wrist: about its link


def _random_motion_frames(chain: Chain, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 s of random knee motion (thigh within 0.6 rad of upright): acc, gyr, true angle."""
    settings = MotionSettings(root_tilt_rad=0.6, root_translation_m=0.05)
    motion = generate_motion(chain, 61.0, seed, settings)
    rec = simulate(chain, 60.0, RATE, seed, ImuNoise(), SimSettings(motion=settings), motion=motion)
    return rec.acc.astype(np.float64), rec.gyr.astype(np.float64), rec.joint_angles[:, 0]


def _observer_angle(acc: np.ndarray, gyr: np.ndarray, rots: list[np.ndarray]) -> np.ndarray:
    """Knee angle (rad) of the constraint observer fed with segment-frame frames."""
    frames = np.zeros(len(acc), frame_dtype(2))
    frames["t_host"] = np.arange(len(acc)) * 10_000_000
    frames["acc"] = np.einsum("kij,nkj->nki", np.stack(rots), acc)
    frames["gyr"] = np.einsum("kij,nkj->nki", np.stack(rots), gyr)
    node = ConstraintObserver.create("observer", context=GraphContext(chain_file=KNEE))
    info = frame_info("filter/imu.frame", ["thigh", "shank"], RATE)
    node.on_block("frame", make_block(info, frames))
    return np.concatenate([b.data["angle"][:, 0] for b in node.emitted]).astype(np.float64)


def test_knee_angle_after_calibration_within_1_deg_of_aligned(knee: Chain) -> None:
    """Mean knee angle error over 8 mountings: calibrated vs the true rotations, same observer."""
    warm = int(5 * RATE)
    diffs = []
    for seed in range(100, 108):
        chain = randomly_mounted(knee, seed)
        acc, gyr = simulated_procedure(chain, seed, RATE)
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok, cal.problems()
        acc, gyr, truth = _random_motion_frames(chain, seed)  # same mounting, new motion
        true_rots = [np.asarray(np_qto_matrix(np.asarray(s.rotation))) for s in chain.imus]
        est_rots = [cal.sensors[s.name].matrix for s in chain.imus]
        err_true = np.degrees(np.abs(_observer_angle(acc, gyr, true_rots) - truth))[warm:]
        err_cal = np.degrees(np.abs(_observer_angle(acc, gyr, est_rots) - truth))[warm:]
        diffs.append(err_cal.mean() - err_true.mean())
        assert diffs[-1] <= 2.25, (seed, err_cal.mean(), err_true.mean())
    # measured (2026-12-05, accelerations at the joint centre): mean 0.69 deg, per mounting
    # -1.49 to +1.95 (seed 101), on errors of 1.4-3.9 deg with the true rotations; with the
    # hinge's gyro-bias estimate (2026-12-07): mean 0.65, -1.73 to +2.01 (seed 101: the true
    # rotations' error 0.06 deg smaller, the calibrated one's unchanged), on 1.4-3.7 deg
    assert np.mean(diffs) <= 1.0, diffs


def test_no_motion_is_reported(knee: Chain) -> None:
    chain = randomly_mounted(knee, 7)
    acc, gyr = simulated_procedure(chain, 7, RATE, flexions=0, root_sway_rad=0.0)
    cal = calibrate(chain, acc, gyr, RATE)
    assert not cal.ok
    assert any("too little motion about the hinge" in p for p in cal.problems()), cal.problems()


def test_motion_about_the_wrong_axis_is_reported(knee: Chain) -> None:
    # the user twists the shank about its long axis instead of flexing the knee
    twisting = replace(knee, bodies=tuple(
        replace(b, joint=replace(b.joint, axis=(0.0, 0.0, 1.0))) if b.name == "shank" else b
        for b in knee.bodies))
    chain = randomly_mounted(twisting, 8)
    acc, gyr = simulated_procedure(chain, 8, RATE)
    cal = calibrate(randomly_mounted(knee, 8), acc, gyr, RATE)
    assert not cal.ok
    assert any("deg from gravity in" in p and "'s static pose" in p
               for p in cal.problems()), cal.problems()


def test_too_short_is_refused(knee: Chain) -> None:
    acc, gyr = simulated_procedure(randomly_mounted(knee, 9), 9, RATE)
    short = {k: v[:150] for k, v in acc.items()}
    with pytest.raises(CalibrationError, match="too short"):
        calibrate(knee, short, {k: v[:150] for k, v in gyr.items()}, RATE)


def test_restless_static_window_is_reported(knee: Chain) -> None:
    chain = randomly_mounted(knee, 10)
    acc, gyr = simulated_procedure(chain, 10, RATE)
    cal = calibrate(chain, acc, gyr, RATE, static=Window(800, 900))  # during the flexions
    assert not cal.ok
    assert any("not still in the static pose" in p for p in cal.problems()), cal.problems()


SIT_S, RISE_S = 3.0, 2.0


def seated_first(knee: Chain, seed: int) -> Motion:
    """The knee's procedure after SIT_S s sitting still (thigh horizontal, knee flexed 90 deg,
    shank upright) and RISE_S s standing up, as knee_tracking1 begins."""
    return _after_sitting(calibration_motion(knee, seed), skip=0)


def _after_sitting(base: Motion, skip: int) -> Motion:
    """SIT_S s sitting still, RISE_S s rising, then ``base`` from its moving channels'
    keyframe ``skip`` on. Sitting: the root 0.45 m lower, thighs level, knees at 90 deg (knee:
    the thigh is the free root; lower body: the pelvis upright, the hips spherical)."""
    lead = SIT_S + RISE_S
    channels = []
    for body, chans in zip(base.chain.bodies, base.channels, strict=True):
        held = [ch.p[0] for ch in chans]
        if body.joint.type is JointType.FREE:
            held[2] -= 0.45
            if body.name == "thigh":  # pitched forward to level
                held[4] = -math.pi / 2
        elif body.joint.type is JointType.SPHERICAL:  # a hip: the thigh level
            held[1] = -math.pi / 2
        elif body.name.startswith("shank"):  # knee flexed 90 deg
            held[0] = math.pi / 2
        first = [skip if len(ch.t) > 2 else 0 for ch in chans]  # constant channels: all
        channels.append(tuple(
            Channel(np.r_[0.0, SIT_S, ch.t[k:] + lead], np.r_[h, h, ch.p[k:]])
            for ch, h, k in zip(chans, held, first, strict=True)))
    return Motion(base.chain, tuple(channels), base.duration_s + lead)


def test_a_seated_rest_before_the_neutral_pose_is_not_taken_for_it(knee: Chain) -> None:
    """Sitting still is a quiet rest too; taken for the neutral pose it puts the thigh's up
    along its forward axis and flips the knee (on knee_tracking1 with the tibia 33 ms later:
    correlation -0.98 with RING). Automatic phase detection must take the standing pose."""
    errors = []
    for seed in range(6):
        chain = randomly_mounted(knee, 300 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_first(chain, seed))
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok, (seed, cal.problems())
        assert cal.static[0] >= SIT_S + RISE_S - 0.2, (seed, cal.static)
        errors += rotation_error_deg(chain, cal)
        seated = [w for w in cal.others if w[0][1] <= SIT_S]  # the report says why not those
        assert seated and all(score < 0.5 for _, score, _ in seated), cal.others
    lines = report_lines(cal)
    assert any(line.startswith("  still window ") and "not taken" in line for line in lines)
    assert max(errors) < 20.0 and np.median(errors) <= 3.0, errors


def test_a_seated_static_window_is_reported(knee: Chain) -> None:
    """Given the sitting rest as the static pose, the calibration says so and is not ok
    (before: accepted, both sensors half a turn off). Measured: 5 of these 6 flagged, with
    7-21 % of the still poses out of range; the sixth (seed 3) flexes the knee to under
    100 deg only, and its mirror image about the sitting pose (-8 to 90 deg) fits the limits:
    nothing in that recording tells the two apart."""
    flagged = 0
    for seed in range(6):
        chain = randomly_mounted(knee, 310 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_first(chain, seed))
        cal = calibrate(chain, acc, gyr, RATE, static=Window(100, 250))
        flagged += not cal.ok and any(
            "static pose was probably not the neutral pose (e.g. sitting" in p
            for p in cal.problems())
    assert flagged >= 5, flagged


def test_a_sitting_window_named_as_such_calibrates(knee: Chain, tmp_path: Path) -> None:
    """The same sitting rests, named with ``pose="sitting"`` (the knee chain's pose: thigh
    level, knee at 90 deg): good rotations. Measured: median 1.9, max 3.9 deg."""
    errors = []
    for seed in range(6):
        chain = randomly_mounted(knee, 310 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_first(chain, seed))
        cal = calibrate(chain, acc, gyr, RATE, static=Window(100, 250), pose="sitting")
        assert cal.ok and cal.pose == "sitting", (seed, cal.problems())
        errors += rotation_error_deg(chain, cal)
    assert np.median(errors) <= 3.0 and max(errors) < 6.0, errors
    assert report_lines(cal)[0].startswith("static pose 1.00-2.50 s (sitting)")
    doc = yaml.safe_load(write_calibration(cal, tmp_path / "cal.yaml").read_text())
    assert doc["source"]["static_pose"] == "sitting"
    with pytest.raises(CalibrationError,
                       match=r"no still pose 'kneeling'.*\['neutral', 'sitting'\]"):
        calibrate(chain, acc, gyr, RATE, pose="kneeling")


def test_pose_distance_reads_still_poses_against_the_chains(knee: Chain) -> None:
    """Segments' up axes as accelerometers in segment frames read them: standing and sitting
    are known poses (0 deg); a standing thigh over an upside-down shank is 180 deg from
    both; the median over the still samples counts."""
    eye = {"thigh": np.eye(3), "shank": np.eye(3)}
    up, fwd = np.array([0.0, 0.0, 9.81]), np.array([9.81, 0.0, 0.0])
    still = np.ones(5, dtype=bool)
    sitting = {"thigh": np.tile(fwd, (5, 1)), "shank": np.tile(up, (5, 1))}
    assert pose_distance_deg(knee, eye, sitting, still) == pytest.approx(0.0, abs=1e-4)
    flipped = {"thigh": np.tile(up, (5, 1)), "shank": np.tile(-up, (5, 1))}
    assert pose_distance_deg(knee, eye, flipped, still) == pytest.approx(180.0)
    flipped["shank"][:3] = up  # three of five standing
    assert pose_distance_deg(knee, eye, flipped, still) == pytest.approx(0.0, abs=1e-4)
    assert math.isnan(pose_distance_deg(knee, eye, flipped, np.zeros(5, dtype=bool)))


def test_the_live_procedure_prompts_the_pose_asked_for(knee: Chain) -> None:
    lead_in, still, _ = procedure_phases(knee, pose="sitting")
    assert "thigh level on the seat" in lead_in.prompt, lead_in.prompt
    assert still.prompt == "hold still in the sitting pose"
    assert "joints straight, segments upright" in procedure_phases(knee)[0].prompt
    with pytest.raises(ValueError, match="no still pose 'lying'"):
        procedure_phases(knee, pose="lying")


def seated_then_moving(knee: Chain, seed: int, flexions: int = 24) -> Motion:
    """SIT_S s sitting still, then up and at once into brisk flexions with the thigh swaying:
    no moment of standing still (``seated_first`` without the neutral pose)."""
    # the moving channels skip their first two keyframes (the neutral pose, held)
    return _after_sitting(calibration_motion(knee, seed, static_s=0.0, flexions=flexions),
                          skip=2)


def test_a_recording_that_never_stands_still_is_calibrated_from_sitting(knee: Chain) -> None:
    """No still window fits the neutral pose, so the chain's sitting pose is tried too, and
    the sitting rest is taken. Before (the neutral pose only) all 10 came out poor, their
    best windows restless moments of the flexions. Measured: 10 of 10 sitting, median 1.7,
    max 6.7 deg."""
    errors = []
    for seed in range(10):
        chain = randomly_mounted(knee, 320 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_then_moving(chain, seed))
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok and cal.pose == "sitting", (seed, cal.problems(), cal.static)
        assert cal.static[1] <= SIT_S + 0.5, cal.static  # the rise starts slowly
        assert any(why.startswith("as neutral: ") for _, _, why in cal.others), cal.others
        errors += rotation_error_deg(chain, cal)
    assert np.median(errors) <= 3.0 and max(errors) < 10.0, errors


def test_a_lower_body_that_never_stands_still_is_calibrated_from_sitting() -> None:
    """lower_body.yaml's sitting pose (pelvis upright, thighs level, knees at 90 deg, feet
    flat): sitting, then up and at once into flexions of every knee and ankle. Before the
    chain named the pose all 4 were poor, every segment but the pelvis half a turn off.
    Measured: all 4 from sitting, thighs and shanks within 2.8 deg, feet within 7.5 (the
    pelvis has no hinge: its heading stays as mounted, from standing as from sitting)."""
    body = load_chain(REPO / "configs/chains/lower_body.yaml")
    errors: dict[str, list[float]] = {}
    for seed in range(4):
        chain = randomly_mounted(body, 400 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_then_moving(chain, seed))
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok and cal.pose == "sitting", (seed, cal.problems(), cal.static)
        for site, err in zip(chain.imus, rotation_error_deg(chain, cal), strict=True):
            if site.name != "pelvis":
                errors.setdefault(site.name.split("_")[0], []).append(err)
    assert max(errors["thigh"] + errors["shank"]) < 5.0 and max(errors["foot"]) < 12.0, errors


def then_supine(base: Motion, lie_s: float = 60.0, down_s: float = 3.0) -> Motion:
    """``base``, then down_s s lying down and lie_s s on the back (the knee's thigh, the free
    root, pitched level and 0.8 m lower), bending the knee to 26 deg and back every 8 s with
    2 s still between: a supine exercise session after a standing calibration."""
    t0 = base.duration_s + down_s
    bends = np.arange(t0, t0 + lie_s - 8.0, 8.0)
    t_knee = np.r_[t0, (bends[:, None] + [2.0, 4.0, 6.0, 8.0]).ravel(), t0 + lie_s]
    p_knee = np.r_[0.02, np.tile([0.02, 0.45, 0.02, 0.02], len(bends)), 0.02]
    channels = []
    for i, chans in enumerate(base.channels):
        if i == 0:
            lying = [ch.p[-1] for ch in chans]
            lying[2], lying[4] = lying[2] - 0.8, -math.pi / 2
            channels.append(tuple(Channel(np.r_[ch.t, t0, t0 + lie_s], np.r_[ch.p, h, h])
                                  for ch, h in zip(chans, lying, strict=True)))
        else:
            channels.append(tuple(Channel(np.r_[ch.t, t_knee], np.r_[ch.p, p_knee])
                                  for ch in chans))
    return Motion(base.chain, tuple(channels), t0 + lie_s)


def test_a_supine_session_after_the_procedure_is_not_taken_for_standing(knee: Chain) -> None:
    """Lying still is quieter than standing and reads every knee angle right, so a supine
    pause scored as the neutral pose: 5 of these 6 took one, both sensors 87-92 deg off,
    reported ok (docs/calibration.md's lying-down limit). The joint-centre lever arms run
    along the segments whatever the mounting; taken lying they turn a quarter turn about the
    knee's axis. Measured: all 6 standing, within 3.8 deg (the lever turns 1-5 deg)."""
    dropped = 0
    for seed in range(6):
        chain = randomly_mounted(knee, 600 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, then_supine(calibration_motion(chain,
                                                                                       seed)))
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok and cal.pose == "neutral" and cal.static[0] < 3.5, (seed, cal.static)
        assert max(rotation_error_deg(chain, cal)) < 8.0, (seed, rotation_error_deg(chain, cal))
        dropped += any("turns the joint centre" in why and "(lying down" in why
                       for _, _, why in cal.others)
    assert dropped >= 4, dropped


def lying_throughout(base: Motion) -> Motion:
    """``base`` done on the back: the knee's thigh (the free root) pitched level, 0.8 m lower,
    its other swaying kept at 0.3 of its size (heel slides)."""
    thigh = tuple(Channel(ch.t, ch.p - 0.8 if k == 2 else (0.3 * ch.p - math.pi / 2 if k == 4
                                                            else ch.p))
                  for k, ch in enumerate(base.channels[0]))
    return Motion(base.chain, (thigh, *base.channels[1:]), base.duration_s)


def test_a_procedure_done_lying_gets_a_note(knee: Chain) -> None:
    """The whole procedure on the back: every still window lies, one is taken for standing,
    the knee angles come out right and the segments 87-180 deg off. No other still pose
    shows it; the lever arms do, turned 84-87 deg about the knee's axis (right calibrations:
    within 14.8 deg over 50 mountings, knee_tracking1 11), and the report says so: a note, not
    a verdict, as a sensor far from the chain's IMU position turns them too."""
    for seed in range(4):
        chain = randomly_mounted(knee, 700 + seed)
        motion = lying_throughout(calibration_motion(chain, seed))
        cal = calibrate(chain, *simulated_procedure(chain, seed, RATE, motion), RATE)
        assert any("the fitted joint centre lies" in n for n in cal.notes()), (seed, cal.notes())
    assert any(line.startswith("NOTE: shank: the fitted joint centre lies")
               for line in report_lines(cal))


def test_a_still_window_at_the_top_of_the_range_is_not_taken_mirrored(knee: Chain) -> None:
    """The same with slower flexions: their peaks (thigh upright, knee flexed 90-125 deg) are
    still windows too. Taken as the neutral pose, such a window reads the knee mirrored (the
    peak's angle less the true one), which fits the limits as well as the truth: 5 of these 8
    came out with both sensors 180 deg off and ok. That reading puts the seated thigh pointing
    backwards and the standing shank upside down, far from every still pose the chain knows,
    and is taken for a mirror now; its joint-centre lever arms, half a turn about the knee's
    axis, say so too (that check comes first, so it names them now). Measured: all 8 ok, 6
    from sitting, 2 from a quiet moment of the flexions (12-20 deg off); median 2.5 deg."""
    errors, mirrors = [], 0
    for seed in range(8):
        chain = randomly_mounted(knee, 320 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE, seated_then_moving(chain, seed, 10))
        cal = calibrate(chain, acc, gyr, RATE)
        assert cal.ok, (seed, cal.problems())
        errors += rotation_error_deg(chain, cal)
        mirrors += any("the joint would read mirrored" in why or "turns the joint centre" in why
                       for _, _, why in cal.others)
    assert max(errors) < 25.0 and np.median(errors) <= 3.0, errors
    assert mirrors >= 4, mirrors


def _raw(acc: np.ndarray, gyr: np.ndarray, t0_ns: int) -> np.ndarray:
    """``imu.raw`` records of one sensor at RATE from t0_ns."""
    raw = np.zeros(len(acc), RAW_IMU_DTYPE)
    raw["t_host"] = t0_ns + np.arange(len(acc)) * round(1e9 / RATE)
    raw["acc"], raw["gyr"] = acc, gyr
    return raw


def test_a_sensor_dropout_is_left_out_not_bridged(knee: Chain) -> None:
    """The shank's sensor drops out for 3 s in the middle of the flexions (BLE): the grid
    leaves the gap out (NaN) where it had bridged it with straight lines, which the axis fit
    took as motion (before: seeds 5 and 9 poor, rotation errors 17 and 44 deg)."""
    t0 = 1_000_000_000
    errors = []
    for seed in range(4, 10):
        chain = randomly_mounted(knee, seed)
        acc, gyr = simulated_procedure(chain, seed, RATE)
        raw = {m: _raw(acc[m], gyr[m], t0) for m in ("thigh", "shank")}
        raw["shank"] = np.delete(raw["shank"], np.s_[1200:1500])  # 12-15 s: flexing
        n = len(acc["thigh"])
        cal = calibrate_samples(raw, chain, RATE, (t0 + 200_000_000, t0 + 2_900_000_000),
                                (t0 + 3_500_000_000, t0 + n * 10_000_000))
        assert cal.ok, (seed, cal.problems())
        errors += rotation_error_deg(chain, cal)
    assert max(errors) < 10.0, errors


def test_the_grid_marks_gaps_and_rest_windows_skip_them() -> None:
    raw = _raw(np.ones((100, 3)), np.zeros((100, 3)), 0)
    raw = np.delete(raw, np.s_[40:60])  # 0.4-0.6 s missing
    grid = np.arange(100) * 10_000_000
    acc, gyr = raw_on_grid(raw, grid, 0.1e9)
    assert np.isnan(acc[40:60]).all()
    assert np.isfinite(acc[:40]).all() and np.isfinite(acc[60:]).all()
    acc, _ = raw_on_grid(raw, grid)  # no limit: bridged
    assert np.isfinite(acc).all()
    windows = rest_candidates(gyr[:, None], RATE, min_s=0.2)
    assert windows and all(w.stop <= 40 or w.start >= 60 for w in windows), windows


def test_a_long_still_phase_does_not_crowd_out_a_short_one() -> None:
    """20 s seated very still, 1 s standing a little less still, motion between: the standing
    window is a candidate; with the accelerations, the seated phase gives one window only (and
    one more where it ends, half seated)."""
    rng = np.random.default_rng(3)
    gyr = np.full((3000, 2, 3), 1.0)  # rad/s: moving
    gyr[:2000] = 0.01
    gyr[2500:2600] = 0.1
    gyr += rng.normal(0.0, 0.005, gyr.shape)
    acc = np.zeros((3000, 2, 3))
    acc[:, :, 2] = 9.81
    acc[:2000, 0] = (9.81, 0.0, 0.0)  # the thigh horizontal while seated
    standing = Window(2500, 2550)
    windows = rest_candidates(gyr, RATE)
    assert len(windows) == 8 and any(w.start >= standing.start for w in windows), windows
    windows = rest_candidates(gyr, RATE, acc=acc)
    assert any(w.start >= standing.start for w in windows), windows
    assert sum(w.stop <= 2000 for w in windows) == 1 and len(windows) <= 3, windows


def test_motion_that_is_not_the_hinges_is_left_out_of_the_axis_fit(knee: Chain) -> None:
    """8 s before the procedure in which the two sensors move independently (each replays
    another part of its own procedure, as sensors handled before they are strapped on): the
    axis fit leaves that motion out and the rotations come out as from the procedure alone.
    Measured 2026-12-07 on 8 mountings: all within 0.9 deg of the procedure alone's errors
    (6.8-8.5 s left out); fitted to all the motion, as before, 2 were good, 2 had 9 and 17
    deg of error and were not reported poor, 4 were poor."""
    for seed in range(8):
        chain = randomly_mounted(knee, 700 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE)
        handled = {"thigh": slice(500, 1300), "shank": slice(1500, 2300)}
        cal = calibrate(chain, {m: np.concatenate([acc[m][handled[m]], acc[m]]) for m in acc},
                        {m: np.concatenate([gyr[m][handled[m]], gyr[m]]) for m in gyr}, RATE)
        assert cal.ok, (seed, cal.problems())
        clean = calibrate(chain, acc, gyr, RATE)
        assert max(rotation_error_deg(chain, cal)) < max(rotation_error_deg(chain, clean)) + 1.5, (
            seed, rotation_error_deg(chain, cal), rotation_error_deg(chain, clean))
        assert cal.sensors["shank"].quality["axis_fit_left_out_s"] >= 4.0


def test_sensors_stiller_than_a_body_are_marked_off_body() -> None:
    """3 s as still as a person stands (gyro 1 deg/s, acc 0.05 m/s^2 std), 3 s on a table
    (sensor noise only), 3 s standing, 3 s on the table with a gap in the middle: only the
    gapless table stretch is marked (and up to 0.6 s of the stances around it: a 2 s window
    mostly on the table is as still)."""
    rng = np.random.default_rng(4)
    n = 300
    body = (math.radians(1.0), 0.05)
    table = (math.radians(0.1), 0.01)
    parts = [body, table, body, table]
    gyr = np.concatenate([rng.normal(0, g, (n, 2, 3)) for g, _ in parts])
    acc = np.concatenate([rng.normal(0, a, (n, 2, 3)) for _, a in parts])
    acc[..., 2] += 9.81
    gyr[3 * n + 150] = np.nan  # 1.5 s of table on each side: short of OFF_BODY_S
    marked = off_body(acc, gyr, RATE)
    assert marked[n:2 * n].all()
    assert not marked[:n - 60].any() and not marked[2 * n + 60:].any()


def test_sensors_named_the_wrong_way_round_are_reported(knee: Chain) -> None:
    """Thigh and shank swapped fit the hinge as well (its angles cannot tell); the accelerations
    at the knee centre, with the chain's lever arms, agree only the right way round. Measured
    on 30 mountings: the swapped naming's residual 3.5-6.5x the right one's (median 6.5)."""
    for seed in range(6):
        chain = randomly_mounted(knee, 400 + seed)
        acc, gyr = simulated_procedure(chain, seed, RATE)
        right = calibrate(chain, acc, gyr, RATE)
        assert right.ok, right.problems()
        quality = right.sensors["shank"].quality
        assert quality["swapped_residual_ms2"] > 2 * quality["joint_centre_residual_ms2"]
        wrong = calibrate(chain, {"thigh": acc["shank"], "shank": acc["thigh"]},
                          {"thigh": gyr["shank"], "shank": gyr["thigh"]}, RATE)
        assert not wrong.ok
        assert any("the sensors look swapped" in p for p in wrong.problems()), wrong.problems()


def test_missing_sensor_names_the_fix(knee: Chain) -> None:
    acc, gyr = simulated_procedure(randomly_mounted(knee, 11), 11, RATE)
    acc = {"femur" if k == "thigh" else k: v for k, v in acc.items()}
    with pytest.raises(CalibrationError, match=r"no data for IMU\(s\) \['thigh'\].*rename"):
        calibrate(knee, acc, gyr, RATE)


def test_parse_window_checks_its_input() -> None:
    assert parse_window("1.5:3", 100.0, 1000, "--static") == Window(150, 300)
    for bad in ("3:1", "x:2", "1", "20:30", "nan:2"):
        with pytest.raises(ValueError, match="--static"):
            parse_window(bad, 100.0, 1000, "--static")


def test_file_round_trip_and_filter_applies_it(knee: Chain, tmp_path: Path) -> None:
    chain = randomly_mounted(knee, 12)
    acc, gyr = simulated_procedure(chain, 12, RATE)
    cal = calibrate(chain, acc, gyr, RATE, source="sim")
    path = write_calibration(cal, tmp_path / "cal.yaml")
    rots = load_rotations(path)
    for name, s in cal.sensors.items():
        np.testing.assert_allclose(rots[name], s.matrix, atol=1e-6)
    node = Filter.create("filter", context=GraphContext(config_file=tmp_path / "g.yaml"),
                         calibration="cal.yaml", bias=False)
    frames = np.zeros(3, frame_dtype(2))
    frames["acc"] = np.stack([acc["thigh"][:3], acc["shank"][:3]], axis=1)
    frames["gyr"] = np.stack([gyr["thigh"][:3], gyr["shank"][:3]], axis=1)
    node.on_block("frame", make_block(frame_info("sync/imu.frame", ["thigh", "shank"], RATE),
                                      frames))
    out = node.emitted[0].data
    for k, name in enumerate(["thigh", "shank"]):
        np.testing.assert_allclose(out["acc"][:, k], frames["acc"][:, k] @ rots[name].T,
                                   atol=1e-4)
    assert node.emitted[0].info.meta["frames"] == ["segment", "segment"]


def test_filter_refuses_a_poor_calibration(knee: Chain, tmp_path: Path) -> None:
    chain = randomly_mounted(knee, 13)
    acc, gyr = simulated_procedure(chain, 13, RATE, flexions=0, root_sway_rad=0.0)
    path = write_calibration(calibrate(chain, acc, gyr, RATE), tmp_path / "poor.yaml")
    assert yaml.safe_load(path.read_text())["ok"] is False
    with pytest.raises(ConfigError, match=r"poor.yaml.*calibration is poor.*too little motion"):
        Filter.create("filter", calibration=str(path))
    Filter.create("filter", calibration=str(path), allow_poor_calibration=True)  # on request


@pytest.mark.parametrize("text, match", [
    ("{}", "not an imuflow calibration file"),
    ("version: 1\nsensors: {thigh: {rotation: [1, 0, 0]}}", r"sensors.thigh.rotation"),
    ("version: 1\nsensors: {thigh: {rotation: [2, 0, 0, 0]}}", "unit quaternion"),
    (": : :", "not a YAML calibration file"),
])
def test_malformed_calibration_file_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_rotations(path)
