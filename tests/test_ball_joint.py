"""BallJoint: a spherical joint's heading pulled towards what the joint centre's acceleration
shows in both segments (synthetic orientations and forces, then simulated lower-body motion)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nodes.constraint_observer import ConstraintObserver
from pipeline.estimation.ball_joint import BallJoint
from pipeline.estimation.constraint import ConstraintSettings
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import simulate
from pipeline.kinematics.quaternion import (
    np_qangle,
    np_qconj,
    np_qfrom_axis_angle,
    np_qmul,
    np_qnormalize,
    np_qrotate,
)
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.node import GraphContext
from tools.spherical_drift import track

REPO = Path(__file__).resolve().parents[1]
RATE = 100.0
Z = np.array([0.0, 0.0, 1.0])


def _joint(tau_s: float = 2.0) -> BallJoint:
    return BallJoint(1, (0, 1), np.zeros((2, 3)), RATE, tau_s, agree_ms2=3.0,
                     min_horizontal_ms2=1.0)


def _scene(n: int, true_delta: float, horizontal_ms2: float, seed: int = 0):
    """Random orientations of both segments and a joint-centre force (gravity plus a random
    horizontal part of about ``horizontal_ms2``), seen from each segment; the body's filter
    frame turned by -true_delta about the vertical. Lever arms zero: the IMUs sit at the joint."""
    rng = np.random.default_rng(seed)
    q_parent = np_qnormalize(rng.normal(size=(n, 4)))
    q_body = np_qnormalize(rng.normal(size=(n, 4)))  # both in the parent filter's earth
    force = np.zeros((n, 3))
    force[:, :2] = horizontal_ms2 * rng.normal(size=(n, 2))
    force[:, 2] = 9.81
    f_parent = np_qrotate(np_qconj(q_parent), force)
    f_body = np_qrotate(np_qconj(q_body), force)
    q_body_own = np_qmul(np_qfrom_axis_angle(Z, np.full(n, -true_delta)), q_body)
    return q_parent, q_body_own, f_parent, f_body, np_qmul(np_qconj(q_parent), q_body)


def test_the_heading_follows_the_joint_centre_force() -> None:
    qp, qb, fp, fb, truth = _scene(2000, 0.7, 3.0)
    joint, zero = _joint(), np.zeros((2000, 3))
    q_rel = joint.update(qp, qb, (fp, fb), (zero, zero))
    assert abs(joint.delta - 0.7) < 1e-3  # 20 s, time constant 2 s
    assert np.degrees(np_qangle(q_rel[-100:], truth[-100:])).max() < 0.1


def test_blocks_of_any_size_give_the_same_numbers() -> None:
    qp, qb, fp, fb, _ = _scene(300, -2.5, 3.0)
    zero = np.zeros((300, 3))
    whole, parts = _joint(), _joint()
    expect = whole.update(qp, qb, (fp, fb), (zero, zero))
    got = np.concatenate([parts.update(qp[i:i + k], qb[i:i + k], (fp[i:i + k], fb[i:i + k]),
                                       (zero[i:i + k], zero[i:i + k]))
                          for i, k in ((0, 1), (1, 7), (8, 92), (100, 200))])
    np.testing.assert_allclose(got, expect, atol=1e-12)
    assert whole.delta == parts.delta


def test_no_pull_without_horizontal_acceleration_or_when_turned_off() -> None:
    qp, qb, fp, fb, _ = _scene(500, 0.7, 0.2)  # standing still: the direction is noise
    zero = np.zeros((500, 3))
    joint = _joint()
    joint.update(qp, qb, (fp, fb), (zero, zero))
    assert joint.delta == 0.0
    qp, qb, fp, fb, _ = _scene(500, 0.7, 3.0)
    off = _joint(tau_s=0.0)
    off.update(qp, qb, (fp, fb), (zero, zero))
    assert off.delta == 0.0


def test_disagreeing_forces_do_not_pull() -> None:
    """A segment that is not rigid with the joint centre (norms differ by more than agree_ms2):
    the direction is not the same vector, so it must not turn the heading."""
    qp, qb, fp, fb, _ = _scene(500, 0.7, 3.0)
    zero = np.zeros((500, 3))
    joint = _joint()
    joint.update(qp, qb, (fp, fb * 1.5), (zero, zero))
    assert joint.delta == 0.0


def _hip_errors(settings: ConstraintSettings, seconds: float = 180.0, seed: int = 21
                ) -> np.ndarray:
    """Hip errors (deg) of the constraint estimator over the last minute of simulated
    lower-body motion (the simulator's noise and gyro biases of up to 3 deg/s), never reset:
    the stream starts in a random pose, so the start heading is wrong too."""
    chain = load_chain(REPO / "configs/chains/lower_body.yaml")
    rec = simulate(chain, seconds, RATE, seed)
    q, _, _ = track(chain, rec.acc, rec.gyr, settings)
    hips = [chain.index(b) for b in ("thigh_l", "thigh_r")]
    last = round(60 * RATE)
    return np.degrees(np_qangle(q[-last:, hips], rec.q_rel[-last:, hips]))


def test_hips_stay_on_the_pose_without_resets() -> None:
    err = _hip_errors(ConstraintSettings())
    assert np.median(err) < 8.0 and np.percentile(err, 90) < 15.0
    drifting = _hip_errors(ConstraintSettings(ball_tau_s=0.0))  # resets only: none here
    assert np.median(drifting) > 15.0


def test_resets_after_motion_take_the_parent_sensors_turn_on_its_segment() -> None:
    """The pelvis sensor turned 40 deg about the pelvis's up axis, which a static-only
    calibration cannot see: the joint centre finds the filters' heading, so the hips read that
    turn until a reset in a known pose (after motion) takes it as the offset; a second one
    after more motion refines it (the first turned the parent's lever arm too), and it stays."""
    chain = load_chain(REPO / "configs/chains/lower_body.yaml")
    rec = simulate(chain, 60.0, RATE, 4)
    turn = np_qfrom_axis_angle(Z, np.array(-0.7))
    acc, gyr = rec.acc.astype(np.float64), rec.gyr.astype(np.float64)
    acc[:, 0], gyr[:, 0] = np_qrotate(turn, acc[:, 0]), np_qrotate(turn, gyr[:, 0])  # pelvis
    hips = [chain.index(b) for b in ("thigh_l", "thigh_r")]
    first, second = 2000, 3000  # 20 s and 30 s: the heading found from motion by then
    q, est, changes = track(chain, acc, gyr, ConstraintSettings(), (first, second), rec.q_rel)
    err = np.degrees(np_qangle(q[:, hips], rec.q_rel[:, hips]))
    assert np.median(err[1000:first]) > 25.0  # before: the sensor's turn shows
    assert np.median(err[second + 500:]) < 8.0  # after both: taken, not pulled away again
    # both resets set the offset (motion had shown the heading), not the heading itself
    assert all(abs(math.degrees(ball.offset) + 40.0) < 8.0 for ball in est._balls)
    assert max(map(abs, changes[0].values())) > max(map(abs, changes[1].values()))


def test_one_reset_after_motion_replays_the_latest_frames() -> None:
    """The reset's offset turns the pelvis's lever arm, which moves the heading the pull
    finds: the reset runs the pull again over the last 10 s with the new lever arm. Hips'
    median error in the 10 s after one reset at 20 s, three pelvis turns (-40, 69, -86 deg):
    measured 7.9 / 9.9 / 5.4 deg (without the replay 12.8 / 14.1 / 8.1)."""
    chain = load_chain(REPO / "configs/chains/lower_body.yaml")
    hips = [chain.index(b) for b in ("thigh_l", "thigh_r")]
    medians = []
    for seed, angle in ((4, -0.7), (5, 1.2), (6, -1.5)):
        rec = simulate(chain, 30.0, RATE, seed)
        turn = np_qfrom_axis_angle(Z, np.array(angle))
        acc, gyr = rec.acc.astype(np.float64), rec.gyr.astype(np.float64)
        acc[:, 0], gyr[:, 0] = np_qrotate(turn, acc[:, 0]), np_qrotate(turn, gyr[:, 0])
        q, _, _ = track(chain, acc, gyr, ConstraintSettings(), (2000,), rec.q_rel)
        medians.append(np.median(np.degrees(np_qangle(q[2000:, hips], rec.q_rel[2000:, hips]))))
    assert np.mean(medians) < 9.5, medians


def test_negative_settings_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="ball_tau_s and ball_min_horizontal_ms2 must be >= 0"):
        ConstraintObserver.create("observer", context=GraphContext(
            chain_file=REPO / "configs/chains/lower_body.yaml"), ball_min_horizontal_ms2=-1.0)


def test_imuflow_eval_scores_the_spherical_joints(tmp_path: Path) -> None:
    """``imuflow eval constraint_observer`` on a lower-body set: hips scored by the rotation
    angle to the truth, their estimates in the predictions (no longer NaN)."""
    from tools.training.data import SEEDS, generate
    from tools.training.problem import get_problem

    data = tmp_path / "lower_body.npz"
    generate(get_problem("lower-body"), [SEEDS["heldout"]], 40.0, progress=False).save(data)
    pred = tmp_path / "pred.npz"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "eval", "constraint_observer",
                           str(data), "--json", "--predictions", str(pred)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[0])["per_joint"]
    assert {"thigh_l", "thigh_r", "shank_l", "foot_r"} <= set(report)
    q = np.load(pred)["q_rel"].astype(np.float64)
    truth = np.load(data)["q_rel"].astype(np.float64)
    k = int(5 * RATE)  # the default warm-up
    for body in ("thigh_l", "thigh_r"):
        i = load_chain(REPO / "configs/chains/lower_body.yaml").index(body)
        err = np.degrees(np_qangle(np_qnormalize(q[0, k:, i]), truth[0, k:, i]))
        assert report[body]["mean_deg"] == pytest.approx(err.mean(), abs=0.02)
        assert err.mean() < 12.0


def test_imuflow_eval_takes_node_params(tmp_path: Path) -> None:
    """``--param`` reaches the node scored (the hips without the pull drift from a random
    start); a malformed one and one for an ONNX model are refused with a clear message."""
    from tools.training.data import SEEDS, generate
    from tools.training.problem import get_problem

    data = tmp_path / "lower_body.npz"
    generate(get_problem("lower-body"), [SEEDS["heldout"]], 30.0, progress=False).save(data)

    def hips(*extra: str) -> float:
        proc = subprocess.run([sys.executable, "-m", "pipeline", "eval", "constraint_observer",
                               str(data), "--json", *extra], capture_output=True, text=True,
                              timeout=120, cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout.splitlines()[0])["per_joint"]
        return report["thigh_l"]["mean_deg"] + report["thigh_r"]["mean_deg"]

    assert hips("--param", "ball_tau_s=0") > 2.0 * hips()
    knee = str(REPO / "models/knee.onnx")
    for model, bad, says in (("constraint_observer", ["--param", "ball_tau_s"], "give KEY=VALUE"),
                             ("constraint_observer", ["--param", "nope=1"],
                              "unknown parameter 'nope'"),
                             (knee, ["--param", "tau_s=1"], "an ONNX model has none")):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "eval", model, str(data), *bad],
                              capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr[-2000:]


def test_after_a_gap_of_the_thigh_sensor_the_hip_heading_is_found_again() -> None:
    """lower-body sets with three 0.4 s gaps (NaN) of thigh_l's data: its VQF starts again
    from the accelerations after each gap and the hip's heading pull averages afresh (1 / n)
    instead of pulling the jumped heading back over ball_tau_s. Measured, mean thigh_l error
    3-10 s after each gap over 6 x 40 s: per pair of sequences restarted 8.0 / 17.0 / 9.6 deg,
    never restarted (restart_gap_s 1000) 19.1 / 23.8 / 13.5, without gaps 4.6 / 6.3 / 6.2."""
    import dataclasses

    from pipeline.evaluation.node_eval import evaluate_node
    from tools.training.data import generate
    from tools.training.problem import get_problem

    data = generate(get_problem("lower-body"), np.arange(7_000_000, 7_000_006), 40.0,
                    progress=False)
    imu = data.imu.copy()
    later = np.zeros(imu.shape[:2], bool)
    for start in (1000, 2000, 3000):
        imu[:, start:start + 40, 6:12] = np.nan  # thigh_l, the second IMU
        later[:, start + 300:start + 1000] = True
    gapped = dataclasses.replace(data, imu=imu)
    err = {name: np.nanmean(np.abs(evaluate_node("constraint_observer", gapped, 5.0,
                                                 progress=False, params=params)
                                   .errors["thigh_l"])[later])
           for name, params in (("restarted", {}), ("never", {"restart_gap_s": 1000.0}))}
    assert err["restarted"] < 0.8 * err["never"], err
