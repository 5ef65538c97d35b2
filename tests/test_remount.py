"""``imuflow eval --remount``: held-out data strapped on at random rotations, then calibrated."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.remount import remount_and_calibrate
from tools.training.data import SEEDS, generate
from tools.training.problem import get_problem

REPO = Path(__file__).resolve().parents[1]


def _imuflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=240, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def knee_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("remount") / "knee.npz"
    seeds = [SEEDS["heldout"] + k for k in range(3)]
    generate(get_problem("knee-walk"), seeds, 30.0, progress=False).save(path)
    return path


def _fitted_turn_deg(before: np.ndarray, after: np.ndarray) -> float:
    """Angle (deg) of the rotation R with after = R before (Kabsch on (T, 3) vectors)."""
    u, _, vt = np.linalg.svd(after.T.astype(np.float64) @ before.astype(np.float64))
    r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    return math.degrees(math.acos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))


def test_each_sensor_is_turned_by_its_calibrations_error(knee_set: Path) -> None:
    """Accelerometer and gyro of each IMU turn by one rotation whose angle is the reported
    calibration error (mounting and calibration cancel but for it); none is poor."""
    from pipeline.evaluation.imu_dataset import load_dataset

    data = load_dataset(knee_set)
    moved, report = remount_and_calibrate(data, seed=11)
    assert report.rotation_error_deg.shape == (3, 2) and not report.poor
    assert np.median(report.rotation_error_deg) < 4.0
    for s in range(3):
        for k in range(2):
            for part in (slice(6 * k, 6 * k + 3), slice(6 * k + 3, 6 * k + 6)):
                turn = _fitted_turn_deg(data.imu[s, :, part], moved.imu[s, :, part])
                assert turn == pytest.approx(report.rotation_error_deg[s, k], abs=0.05)
    again, _ = remount_and_calibrate(data, seed=11)
    np.testing.assert_array_equal(again.imu, moved.imu)  # seeded
    other, _ = remount_and_calibrate(data, seed=12)
    assert np.abs(other.imu - moved.imu).max() > 0.01


def test_eval_remount_scores_the_calibrated_knee(knee_set: Path) -> None:
    proc = _imuflow("eval", "models/knee.onnx", str(knee_set), "--remount", "5", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.splitlines()[0])
    assert doc["remount"]["seed"] == 5 and doc["remount"]["poor_calibrations"] == 0
    assert doc["remount"]["rotation_error_deg"]["max"] < 15.0
    # 32 x 60 s (BENCHMARKS.md): 1.6-1.7 deg mean; without --remount 1.4
    assert doc["per_joint"]["shank"]["mean_deg"] < 3.0
    proc = _imuflow("eval", "constraint_observer", str(knee_set), "--remount", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "remounted at random and calibrated: rotation error median" in proc.stdout


def test_remount_refuses_imus_a_calibration_cannot_fix(tmp_path: Path) -> None:
    """arm3-sparse's IMUs (seg1, seg3) share no hinge: static calibration only, heading as
    mounted, which no observer could undo."""
    path = tmp_path / "arm3.npz"
    generate(get_problem("arm3-sparse"), [SEEDS["heldout"]], 10.0, progress=False).save(path)
    proc = _imuflow("eval", "constraint_observer", str(path), "--remount", "0")
    assert proc.returncode != 0
    assert "get only the static part of a calibration" in proc.stderr, proc.stderr[-2000:]
