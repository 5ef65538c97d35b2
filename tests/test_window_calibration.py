"""The window's Calibrate and Reset heading buttons, under Xvfb, on the simulated knee.

The simulated source performs the calibration procedure (``procedure: calibration``: the
neutral pose, then hinge flexions) with IMUs mounted far from the segment frames; the
window runs the guided procedure (prompts, a progress bar per step) on what arrives at its
``imu`` input, writes calibration.yaml into the run folder and says where and how to use it.
The rotations must match the mounting (as `imuflow calibrate CONFIG` does,
tests/test_calibrate_live.py). Reset heading goes to the orientation node and its reply shows.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.calibration import load_rotations
from pipeline.calibration.procedure import procedure_phases
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.quaternion import np_qto_matrix
from tests.test_calibrate_live import MOUNTING
from tests.test_viewer import _run_graph, _wait_for

pytest_plugins = ["tests.conftest_gui"]

REPO = Path(__file__).resolve().parents[1]
SIM_STILL_S = 8.0  # the simulated neutral pose from the graph's start, s
SIM_MOTION_S = 10.0  # then the flexions, s
STILL_S = 2.0  # the window's still phase, s


def _graph(tmp: Path) -> Path:
    chain = yaml.safe_load((REPO / "configs/chains/knee.yaml").read_text())
    for imu in chain["imus"]:
        imu["rotation"] = MOUNTING[imu["name"]]
    (tmp / "knee_mounted.yaml").write_text(yaml.safe_dump(chain))
    graph = {"version": 1, "name": "wincal", "chain": "knee_mounted.yaml", "nodes": [
        {"id": "sim", "kind": "sim", "params": {
            "procedure": "calibration", "seed": 3, "procedure_static_s": SIM_STILL_S,
            "procedure_functional_s": SIM_MOTION_S, "duration_s": 40}},
        {"id": "sync", "kind": "sync", "params": {"rate_hz": 100, "max_gap_s": 0.1},
         "inputs": {"raw": "sim/imu.raw"}},
        {"id": "orientation", "kind": "orientation", "params": {"imu": "thigh"},
         "inputs": {"frame": "sync/imu.frame"}},
        {"id": "fk", "kind": "fk", "inputs": {"state": "sim/chain.truth"}},
        {"id": "viewer", "kind": "viewer", "params": {"fps": 30},
         "inputs": {"pose": "fk/chain.pose", "imu": "sync/imu.frame",
                    "truth": "sim/chain.truth"}}]}
    path = tmp / "wincal.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_window_calibrates_the_mounted_knee_and_resets_heading(display, tmp_path, monkeypatch):
    from pipeline.runtime.control import send_command
    from pipeline.runtime.node_loop import ctl_endpoint

    monkeypatch.chdir(REPO)
    phases = procedure_phases(load_chain(REPO / "configs/chains/knee.yaml"))
    seen: dict = {"prompts": {}}

    def drive(run_dir: Path) -> None:
        t_start = time.monotonic()  # the graph (and the simulated procedure) just started
        ctl = ctl_endpoint(run_dir, "viewer")

        def cmd(name: str, **args: object) -> dict:
            return send_command(ctl, name, args, timeout_s=20)

        _wait_for("the window", lambda: cmd("view_state").get("frames_drawn", 0) > 3, 60)
        # the prompted still phase ends when the simulated one does, the motion phase
        # covers the flexions
        lead_in = SIM_STILL_S - STILL_S - (time.monotonic() - t_start) - 0.3
        assert lead_in > 0.3, "the window took too long to come up"
        started = cmd("calibrate", lead_in_s=lead_in, static_s=STILL_S,
                      functional_s=SIM_MOTION_S)
        assert started["ok"] and [p["prompt"] for p in started["phases"]] == [
            p.prompt for p in phases]
        while True:
            st = cmd("calibration_state")
            if st["state"] != "running":
                break
            seen["prompts"].setdefault(st["step"], st["prompt"])
            seen.setdefault("progress", []).append((st["step"], st["progress"]))
            if st["step"] == 2 and "shot" not in seen:
                seen["shot"] = cmd("screenshot", path=str(tmp_path / "prompt.png"))
            time.sleep(0.2)
        st = _wait_for("the estimate", lambda: (s := cmd("calibration_state"))["state"]
                       in ("done", "failed") and s, 60)
        seen["final"] = st
        seen["no_such_pose"] = cmd("calibrate", pose="lying")
        seen["file"] = Path(st["path"]).read_text() if st.get("path") else ""  # before stop
        cmd("heading_reset")
        seen["heading"] = _wait_for("the heading reply", lambda: (
            v := cmd("view_state"))["model_reply"].get("cmd") == "heading_reset" and v, 20)
        cmd("close")

    rc, _elapsed, errors = _run_graph(_graph(tmp_path), drive, timeout_s=150)
    assert not errors, errors
    assert rc == 0
    # the steps and their prompts, in order, with a progress bar that moved
    assert sorted(seen["prompts"]) == [1, 2, 3]
    for i, phase in enumerate(phases, 1):
        assert seen["prompts"][i].lower().startswith(phase.prompt[:20].lower())
    assert max(p for s, p in seen["progress"] if s == 3) > 0.5
    assert Path(seen["shot"]["path"]).stat().st_size > 10_000
    final = seen["final"]
    assert final["state"] == "done" and final["ok"] is True, final
    run_file = Path(final["path"])
    assert run_file.name == "calibration.yaml"
    assert f"wrote {run_file}" in final["message"]
    assert f"add `calibration: {run_file}` to the params of the graph's filter" in final["message"]
    assert "removed when the graph stops" in final["message"]
    copy = tmp_path / "cal.yaml"
    copy.write_text(seen["file"])
    rotations = load_rotations(copy)  # a file the filter accepts (ok: true)
    for name, q in MOUNTING.items():
        true = np.asarray(np_qto_matrix(np.asarray(q)))
        err = math.degrees(math.acos(np.clip((np.trace(rotations[name].T @ true) - 1) / 2,
                                             -1, 1)))
        assert err < 8.0, (name, err)
    assert yaml.safe_load(seen["file"])["source"]["static_pose"] == "neutral"
    refused = seen["no_such_pose"]
    assert refused["ok"] is False and "no still pose 'lying'" in refused["error"], refused
    reply = seen["heading"]["model_reply"]
    assert reply["ok"] is True and "removed_deg" in reply, reply
    assert "deg of heading removed" in seen["heading"]["model_reply_text"]
