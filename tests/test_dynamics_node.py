"""Dynamics node: output equals the offline computation, accuracy, gyroscope rates, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodes.dynamics import Dynamics
from pipeline.dynamics import InverseDynamics
from pipeline.dynamics.differentiator import differentiate, q_from_state
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate
from pipeline.kinematics.motion import generate_motion
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import FRAME, STATE, TORQUE, frame_dtype, state_dtype
from pipeline.runtime.testing import make_block

REPO = Path(__file__).resolve().parents[1]
ARM5 = REPO / "configs" / "chains" / "arm5.yaml"
KNEE = REPO / "configs" / "chains" / "knee.yaml"
RATE = 100.0


def arm_states(seconds: float = 6.0, seed: int = 4, chain_file: Path = ARM5):
    """chain.state samples of random motion of ``chain_file`` (arm5), ideal imu.frame
    samples, and the true q, qd, qdd."""
    chain = load_chain(chain_file)
    motion = generate_motion(chain, seconds + 1.0, seed)
    rec = simulate(chain, seconds, RATE, seed, ImuNoise.none(),
                   SimSettings(placement_jitter_m=0.0), motion=motion)
    t = rec.t
    st = np.empty(len(t), state_dtype(chain.n_bodies, len(chain.hinge_bodies)))
    st["t_host"] = (1_000_000_000 + np.round(t * 1e9)).astype(np.int64)
    st["q_rel"] = rec.q_rel
    st["angle"] = rec.joint_angles
    frames = np.empty(len(t), frame_dtype(len(chain.imus)))
    frames["t_host"], frames["acc"], frames["gyr"], frames["flags"] = st["t_host"], rec.acc, \
        rec.gyr, 0
    return chain, st, frames, motion.q(t), motion.qd(t), motion.qdd(t)


def state_info(chain) -> StreamInfo:
    dt = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
    return StreamInfo.for_array("sim/chain.state", STATE, dt, rate_hz=RATE)


def feed(node: Dynamics, st: np.ndarray, sizes=(1,), frames: np.ndarray | None = None,
         imus: list[str] | None = None) -> np.ndarray:
    info = state_info(node.chain)
    finfo = StreamInfo.for_array("sync/imu.frame", FRAME, frames.dtype, rate_hz=RATE,
                                 meta={"imus": imus}) if frames is not None else None
    k, i = 0, 0
    while k < len(st):
        n = sizes[i % len(sizes)]
        if frames is not None:
            node.on_block("imu", make_block(finfo, frames[k:k + n]))
        node.on_block("state", make_block(info, st[k:k + n]))
        k, i = k + n, i + 1
    blocks = [b for b in node.emitted if b.topic.endswith(TORQUE)]
    return np.concatenate([b.data for b in blocks]) if blocks else np.zeros(0)


def test_node_output_equals_offline_computation_for_any_block_size() -> None:
    chain, st, _, _, _, _ = arm_states()
    q = q_from_state(chain, st["q_rel"], st["angle"])
    qs, qds, qdds, first = differentiate(chain, q, RATE, 7, "centre")
    tau, res = InverseDynamics(chain).torques_batch(qs, qds, qdds)
    outs = []
    for sizes in ((1,), (3, 7, 1, 16), (50,)):
        node = Dynamics.create("dynamics", chain=str(ARM5))
        out = feed(node, st, sizes)
        assert len(out) == len(st) - 6 and first == 3
        np.testing.assert_array_equal(out["t_host"], st["t_host"][first:first + len(out)])
        np.testing.assert_allclose(out["tau"], tau.astype(np.float32), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(out["residual"], res.astype(np.float32), rtol=1e-6, atol=1e-5)
        outs.append(out)
    np.testing.assert_array_equal(outs[0]["tau"], outs[1]["tau"])
    np.testing.assert_array_equal(outs[0]["tau"], outs[2]["tau"])
    meta = node.output_info(TORQUE).meta
    assert meta["dofs"] == list(chain.body_names) and meta["delay_s"] == pytest.approx(0.03)


def test_torques_close_to_the_true_ones() -> None:
    """Differentiated angles vs the analytic q, qd, qdd of the motion (same time stamps)."""
    chain, st, _, q, qd, qdd = arm_states()
    node = Dynamics.create("dynamics", chain=str(ARM5))
    out = feed(node, st, (10,))
    idx = np.searchsorted(st["t_host"], out["t_host"])
    true_tau, _ = InverseDynamics(chain).torques_batch(q[idx], qd[idx], qdd[idx])
    err = out["tau"] - true_tau
    rms_true = np.sqrt(np.mean(true_tau ** 2, axis=0))
    rms_err = np.sqrt(np.mean(err ** 2, axis=0))
    assert np.all(rms_err < 0.02 * rms_true + 1e-3), (rms_err, rms_true)


def test_gyroscope_rates_replace_differentiated_ones() -> None:
    chain, st, frames, q, qd, qdd = arm_states(4.0)
    node = Dynamics.create("dynamics", chain=str(ARM5))
    out = feed(node, st, (1,), frames, list(chain.imu_names))
    meta = node.output_info(TORQUE).meta
    assert meta["gyro_hinges"] == list(chain.body_names)
    assert node.stats.extra["gyro_frames"] == len(out)
    idx = np.searchsorted(st["t_host"], out["t_host"])
    np.testing.assert_allclose(out["qd"], qd[idx], atol=2e-3)  # float32 gyro samples
    sg = Dynamics.create("dynamics", chain=str(ARM5))
    out_sg = feed(sg, st, (1,))
    assert not np.array_equal(out_sg["qd"], out["qd"])
    np.testing.assert_allclose(out["qdd"], qdd[idx], atol=0.05 * np.abs(qdd).max())


def test_root_imu_gives_a_floating_root_its_linear_acceleration() -> None:
    """knee: the thigh is a free root that translates; chain.state has no positions, so the
    root's acceleration comes from the thigh IMU (ideal sensors, true angles)."""
    chain, st, frames, q, qd, qdd = arm_states(6.0, chain_file=KNEE)
    knee = chain.qd_start[1]
    err = {}
    for root_acc in (True, False):
        node = Dynamics.create("dynamics", chain=str(KNEE), root_acc=root_acc)
        out = feed(node, st, (1,), frames, list(chain.imu_names))
        meta = node.output_info(TORQUE).meta
        assert meta["root_acceleration"] == ("root IMU" if root_acc else "zero (not measured)")
        assert node.stats.extra["root_acc_frames"] == (len(out) if root_acc else 0)
        idx = np.searchsorted(st["t_host"], out["t_host"])
        lin = qdd[idx, :3]  # m/s^2, the true root acceleration
        lin_err = np.sqrt(np.mean((out["qdd"][:, :3] - lin) ** 2))
        if root_acc:  # the rest is the lever arm's alpha, a derivative of the gyro (7 frames)
            assert lin_err < 0.1 * np.sqrt(np.mean(lin ** 2)), lin_err
        true_tau, _ = InverseDynamics(chain).torques_batch(q[idx], qd[idx], qdd[idx])
        err[root_acc] = np.sqrt(np.mean((out["tau"][:, knee] - true_tau[:, knee]) ** 2))
    rms = np.sqrt(np.mean(true_tau[:, knee] ** 2))
    assert err[True] < 0.03 * rms, (err, rms)  # 1.5 % measured
    assert err[False] > 5 * err[True], err  # without it the thigh's translation is missing (11 %)


def test_gap_restarts_the_window() -> None:
    chain, st, _, _, _, _ = arm_states(1.0)
    st2 = st.copy()
    st2["t_host"][50:] += 1_000_000_000  # a second missing
    node = Dynamics.create("dynamics", chain=str(ARM5))
    out = feed(node, st2, (1,))
    assert len(out) == len(st) - 12 and node.stats.extra["resets"] == 1


def test_missing_inertia_is_a_config_error_naming_file_and_key() -> None:
    with pytest.raises(ConfigError) as e:
        Dynamics.create("dynamics", chain=str(REPO / "configs" / "chains" / "arm3.yaml"))
    assert e.value.file.endswith("arm3.yaml") and e.value.key == "body 'seg1' inertia"
    assert "node 'dynamics'" in str(e.value) and "has no inertia" in str(e.value)
    ctx = GraphContext(chain_file=REPO / "configs" / "chains" / "knee.yaml")
    node = Dynamics.create("dynamics", context=ctx, subject_mass_kg=90.0, subject_height_m=1.9)
    assert node.dyn.inertia.total_mass == pytest.approx(90 * (0.1416 + 0.0433))
