"""tools/resynthesize.py on the real knee recording: the played-back motion reproduces the
root sensor's signals and the estimated knee angle, and every channel swap is scored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.imu_dataset import load_dataset

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, check=False)


def test_knee_recording_is_played_back_and_its_channels_swapped(realdata: Path,
                                                                 tmp_path: Path) -> None:
    folder = realdata / "movella_dot" / "knee_tracking1"
    session, cal = tmp_path / "knee.mcap", tmp_path / "cal.yaml"
    for args in (["import", str(folder / "femur.csv"), str(folder / "tibia.csv"), "-o",
                  str(session), "--name", "femur=thigh", "--name", "tibia=shank"],
                 ["calibrate", str(session), "-o", str(cal)]):
        proc = _run("-m", "pipeline", *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _run("tools/resynthesize.py", str(session), "--calibration", str(cal), "--out-dir",
                str(tmp_path / "out"), "--window", "walking=33:48")
    assert proc.returncode == 0, proc.stderr[-3000:]
    syn = load_dataset(tmp_path / "out" / "synthetic.npz")
    real = load_dataset(tmp_path / "out" / "recording.npz")
    assert syn.imu.shape == real.imu.shape and syn.imus == real.imus == ("thigh", "shank")
    late = slice(1000, None)  # after 10 s
    # the thigh (root) sensor is reproduced: its gyro within 0.15 rad/s rms on every axis
    # (measured 0.05-0.09), its accelerometer within 1.2 m/s^2 (0.5-0.8)
    gyr = np.sqrt(((syn.imu[0, late, 3:6] - real.imu[0, late, 3:6]) ** 2).mean(axis=0))
    acc = np.sqrt(((syn.imu[0, late, 0:3] - real.imu[0, late, 0:3]) ** 2).mean(axis=0))
    assert (gyr < 0.15).all() and (acc < 1.2).all(), (gyr, acc)
    # the synthetic truth is the estimate: the knee's angle within 1.5 deg at p99
    w, y = syn.q_rel[0, late, 1, 0], syn.q_rel[0, late, 1, 2]
    wr, yr = real.q_rel[0, late, 1, 0], real.q_rel[0, late, 1, 2]
    diff = np.degrees(2 * np.arctan2(y, w) - 2 * np.arctan2(yr, wr))
    assert np.percentile(np.abs(diff), 99) < 1.5
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    # header, the recording, the synthetic set and 5 swaps per IMU, each with two models
    assert len(rows) == 1 + 2 * (2 + 2 * 5), proc.stdout
    assert any("shank gyr z recorded | knee.onnx" in r for r in rows)
    assert all(r.count("/") == 2 for r in rows[1:]), rows  # two windows: signed / abs each
