"""`imuflow calibrate CONFIG`: the procedure run live with prompts, on the simulated knee."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from pipeline.calibration import load_rotations
from pipeline.kinematics.quaternion import np_qto_matrix

REPO = Path(__file__).resolve().parents[1]
# sensors mounted far from the segment frames (as on the real knee recordings)
MOUNTING = {"thigh": [0.5, 0.5, -0.5, 0.5], "shank": [0.0, 0.7071068, 0.7071068, 0.0]}


def _graph(tmp: Path, **sim: object) -> Path:
    chain = yaml.safe_load((REPO / "configs/chains/knee.yaml").read_text())
    for imu in chain["imus"]:
        imu["rotation"] = MOUNTING[imu["name"]]
    (tmp / "knee_mounted.yaml").write_text(yaml.safe_dump(chain))
    graph = {"version": 1, "name": "calibrate-live", "chain": "knee_mounted.yaml",
             "nodes": [{"id": "sim", "kind": "sim",
                        "params": {"procedure": "calibration", "seed": 3, **sim}}]}
    path = tmp / "sim_procedure.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


def _calibrate(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pipeline", "calibrate", *args],
                          capture_output=True, text=True, timeout=180, cwd=REPO, env=env)


def test_live_procedure_finds_the_mounting(tmp_path):
    graph = _graph(tmp_path, procedure_static_s=4, procedure_functional_s=10)
    out = tmp_path / "cal.yaml"
    keep = tmp_path / "procedure.mcap"
    proc = _calibrate(str(graph), "-o", str(out), "--lead-in-s", "1", "--static-s", "2",
                      "--functional-s", "10", "--keep", str(keep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("step 1/3: get into the neutral pose", "step 2/3: hold still",
                 "step 3/3: flex and extend each joint"):
        assert step in proc.stdout, proc.stdout
    assert keep.stat().st_size > 0
    cal = yaml.safe_load(out.read_text())
    assert cal["ok"] is True
    # the still phase as prompted (after the 1 s lead-in, with 0.5 s margins), well inside the
    # simulated neutral pose (4 s), not a quiet moment found elsewhere
    t0, t1 = cal["source"]["static_s"]
    assert 0.5 < t0 < t1 < 4.0 and t1 - t0 > 0.5, (t0, t1)
    rotations = load_rotations(out)
    for name, q in MOUNTING.items():
        true = np.asarray(np_qto_matrix(np.asarray(q)))
        est = rotations[name]
        err = math.degrees(math.acos(np.clip((np.trace(est.T @ true) - 1) / 2, -1, 1)))
        assert err < 8.0, (name, err)  # recorded procedures: median 3, all < 20 (test_calibration)


def test_graph_that_ends_early_calibrates_nothing(tmp_path):
    graph = _graph(tmp_path, duration_s=2)
    out = tmp_path / "cal.yaml"
    proc = _calibrate(str(graph), "-o", str(out), "--lead-in-s", "1", "--static-s", "2",
                      "--functional-s", "10")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "stopped before the procedure ended" in proc.stderr
    assert not out.exists()
