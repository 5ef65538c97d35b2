"""Orientation node: VQF on the root IMU of imu.frame, against simulated truth and offline VQF."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import vqf

from nodes.orientation import Orientation
from pipeline.estimation.vqf_tuning import ROOT_BODY_WORN
from pipeline.evaluation.orientation_error import inclination_error
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import SimRecording, simulate
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.streams import FrameFlag, frame_dtype, frame_info
from pipeline.runtime.testing import make_block

RATE = 100.0
KNEE = Path(__file__).resolve().parents[1] / "configs" / "chains" / "knee.yaml"
INFO = frame_info("sync/imu.frame", ["thigh", "shank"], RATE)


@lru_cache(maxsize=1)
def _recording() -> SimRecording:
    return simulate(load_chain(KNEE), 30.0, RATE, seed=3)


def _frames(rec: SimRecording) -> np.ndarray:
    out = np.zeros(len(rec.t), frame_dtype(2))
    out["t_host"] = 10**12 + np.rint(rec.t * 1e9).astype(np.int64)
    out["acc"], out["gyr"] = rec.acc, rec.gyr
    return out


def _run(node: Orientation, frames: np.ndarray, block: int) -> np.ndarray:
    for i in range(0, len(frames), block):
        node.on_block("frame", make_block(INFO, frames[i:i + block],
                                          t_host=int(frames["t_host"][i])))
    return np.concatenate([b.data for b in node.emitted])


def test_matches_offline_vqf_and_truth_whatever_the_block_size() -> None:
    rec = _recording()
    frames = _frames(rec)
    whole = _run(Orientation.create(imu="shank"), frames, len(frames))
    ones = _run(Orientation.create(imu="shank"), frames, 1)
    np.testing.assert_array_equal(ones["q"], whole["q"])
    np.testing.assert_array_equal(whole["t_host"], frames["t_host"])
    ref = vqf.VQF(1 / RATE, **ROOT_BODY_WORN.kwargs()).updateBatch(
        np.ascontiguousarray(rec.gyr[:, 1], dtype=np.float64),
        np.ascontiguousarray(rec.acc[:, 1], dtype=np.float64))
    np.testing.assert_allclose(whole["q"], ref["quat6D"], atol=1e-6)
    err = np.degrees(inclination_error(rec.imu_q_world[:, 1], whole["q"]))
    settled = rec.t > 5.0
    # acc biases up to 0.5 m/s^2 alone tilt the estimate by up to 3 deg; a frame-convention
    # mistake would show tens of degrees
    assert np.mean(err[settled]) < 6.0 and np.percentile(err[settled], 90) < 10.0


def test_root_defaults_to_the_first_imu_and_params_reach_vqf() -> None:
    rec = _recording()
    node = Orientation.create(tau_acc_s=1.0, vqf={"restThGyr": 3.0})
    out = _run(node, _frames(rec)[:500], 100)
    ref = vqf.VQF(1 / RATE, **dict(ROOT_BODY_WORN.kwargs(), tauAcc=1.0, restThGyr=3.0)).updateBatch(
        np.ascontiguousarray(rec.gyr[:500, 0], dtype=np.float64),
        np.ascontiguousarray(rec.acc[:500, 0], dtype=np.float64))
    np.testing.assert_allclose(out["q"], ref["quat6D"], atol=1e-6)
    info = node.emitted[0].info
    assert info.kind == "root.orientation" and info.source == "thigh"
    assert info.meta["vqf"]["tauAcc"] == 1.0


def test_missing_frames_are_bridged_not_poisoning_the_filter() -> None:
    rec = _recording()
    frames = _frames(rec)
    frames["acc"][1000:1010, 0] = np.nan
    frames["gyr"][1000:1010, 0] = np.nan
    frames["flags"][1000:1010, 0] = FrameFlag.MISSING
    node = Orientation.create()
    out = _run(node, frames, 37)
    assert np.isfinite(out["q"]).all()
    np.testing.assert_allclose(np.linalg.norm(out["q"], axis=1), 1.0, atol=1e-5)
    err = np.degrees(inclination_error(rec.imu_q_world[:, 0], out["q"]))
    assert err[1000:1100].max() < 8.0
    assert node.stats.extra["bridged_frames"] == 10


@pytest.mark.parametrize("block", [1, 37])
def test_saturated_frames_are_used_as_data(block: int) -> None:
    """SATURATED (acc at the sensor's range) keeps its values: VQF uses them, nothing bridged."""
    frames = _frames(_recording())
    flagged = frames.copy()
    flagged["flags"][1000:1010, 0] = FrameFlag.SATURATED
    flagged["flags"][2000, 0] = FrameFlag.SATURATED | FrameFlag.AT_REST
    node = Orientation.create()
    out = _run(node, flagged, block)
    np.testing.assert_array_equal(out["q"], _run(Orientation.create(), frames, block)["q"])
    assert node.stats.extra["bridged_frames"] == 0


@pytest.mark.parametrize("params,match", [({"mode": "9d"}, "magnetometer"),
                                          ({"vqf": {"tauAc": 1.0}}, "unknown VQF"),
                                          ({"tau_acc_s": 0.0}, "tau_acc_s")])
def test_bad_params_are_refused(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Orientation.create(**params)


def test_unknown_root_imu_names_the_available_ones() -> None:
    node = Orientation.create(imu="pelvis")
    with pytest.raises(ConfigError, match="thigh"):
        _run(node, np.zeros(3, frame_dtype(2)), 3)


def _yaw_deg(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (q[..., i].astype(np.float64) for i in range(4))
    return np.degrees(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def test_heading_reset_zeroes_the_heading_and_keeps_the_inclination() -> None:
    rec = _recording()
    frames = _frames(rec)
    node = Orientation.create(imu="thigh")
    assert node.on_command("heading_reset", {})["ok"] is False  # nothing to reset yet
    before = _run(node, frames[:1000], 1)
    reply = node.on_command("heading_reset", {})
    assert reply["ok"] is True
    assert reply["removed_deg"] == pytest.approx(_yaw_deg(before["q"][-1]), abs=0.01)
    assert abs(reply["removed_deg"]) > 1.0  # a reset that changes something
    after = _run(node, frames[1000:1500], 1)["q"][1000:]  # _run returns all emitted so far
    plain = _run(Orientation.create(imu="thigh"), frames[:1500], 1500)["q"][1000:]
    turned = (_yaw_deg(plain) - reply["removed_deg"] + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(_yaw_deg(after), turned, atol=0.05)
    assert abs(_yaw_deg(after[0])) < 2.0  # right after the reset the root faces earth x
    err = np.degrees(inclination_error(plain.astype(np.float64), after.astype(np.float64)))
    assert err.max() < 1e-3  # a rotation about earth z only
    assert node.on_command("no_such", {})["ok"] is False
