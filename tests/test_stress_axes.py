"""tools/stress_axes.py: one generator setting pushed at a time, every observer scored on it."""

from __future__ import annotations

import json

import numpy as np

from tools.stress_axes import AXES, SEED0, main
from tools.training.data import generate
from tools.training.problem import get_problem


def test_each_axis_changes_only_its_setting() -> None:
    problem, seeds = get_problem("knee-field"), [SEED0]
    base = generate(problem, seeds, 10.0, progress=False)
    _, vary, noise = AXES["gyro bias x2"]
    biased = generate(problem, seeds, 10.0, progress=False, vary=vary, noise=noise)
    np.testing.assert_array_equal(base.q_rel, biased.q_rel)  # same motion, other sensors
    assert not np.array_equal(base.imu, biased.imu)
    _, vary, noise = AXES["joint motion x1.6"]
    fast = generate(problem, seeds, 10.0, progress=False, vary=vary, noise=noise)
    gyr = slice(3, 6)
    assert np.abs(fast.imu[0, :, gyr]).max() > np.abs(base.imu[0, :, gyr]).max()
    _, vary, noise = AXES["vibration 6 m/s^2"]
    shaken = generate(problem, seeds, 10.0, progress=False, vary=vary, noise=noise)
    jerk = [np.abs(np.diff(d.imu[0, :, :3], axis=0)).mean() for d in (base, shaken)]
    assert jerk[1] > 3 * jerk[0], jerk  # sample-to-sample changes of the acceleration


def test_table_scores_the_model_and_the_constraint_observer(capsys) -> None:
    assert main(["models/knee.onnx", "--problem", "knee-field", "--sequences", "1",
                 "--duration-s", "8", "--axis", "none", "--axis", "noise x2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["axis"] for r in doc["rows"]] == ["none", "noise x2"]
    for row in doc["rows"]:
        assert set(row["models/knee.onnx"]) == {"shank"}
        assert 0 < row["models/knee.onnx"]["shank"] < 90
        assert 0 < row["constraint_observer"]["shank"] < 180


def test_sensor_gaps_blank_only_the_last_imu() -> None:
    from tools.stress_axes import GAP_S, sensor_gaps

    data = generate(get_problem("arm3-wide"), [SEED0, SEED0 + 1], 60.0, progress=False)
    gapped = sensor_gaps(data)
    np.testing.assert_array_equal(gapped.q_rel, data.q_rel)
    np.testing.assert_array_equal(gapped.imu[..., :6], data.imu[..., :6])  # seg1 untouched
    missing = np.isnan(gapped.imu[..., 6:]).all(axis=-1)
    assert np.array_equal(np.isnan(gapped.imu[..., 6:]).any(axis=-1), missing)  # whole frames
    assert not missing[:, :500].any()
    for seq in missing:
        starts = np.flatnonzero(np.diff(seq.astype(int)) == 1)
        assert 3 <= len(starts) <= 5  # five a minute, one may run into another
        assert GAP_S[0] * 100 <= seq.sum() / len(starts) <= 2 * GAP_S[1] * 100


def test_the_mirror_image_is_exact_for_the_constraint_observer_on_the_knee() -> None:
    """Mirrored twice is the set itself; the knee's IMU sites are on the midline, so the
    mirrored set is the other leg's motion and the constraint observer (no learned asymmetry)
    scores it the same to 1e-3 deg."""
    from pipeline.evaluation.node_eval import evaluate_node
    from tools.stress_axes import mirrored

    data = generate(get_problem("knee-walk"), [SEED0], 20.0, progress=False)
    np.testing.assert_array_equal(mirrored(mirrored(data)).imu, data.imu)
    np.testing.assert_array_equal(mirrored(mirrored(data)).q_rel, data.q_rel)
    left = mirrored(data)
    assert not np.array_equal(left.imu, data.imu)
    scores = [evaluate_node("constraint_observer", d, progress=False).stats["shank"].mean_deg
              for d in (data, left)]
    assert abs(scores[0] - scores[1]) < 1e-3, scores
