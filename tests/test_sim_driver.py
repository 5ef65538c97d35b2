"""Simulated IMU driver and forward-kinematics node, run standalone (no bus)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from drivers.sim import SimImu
from nodes.fk import ForwardKinematics
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import Kinematics
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.streams import POSE, RAW_IMU, TRUTH

REPO = Path(__file__).resolve().parents[1]
ARM3 = REPO / "configs" / "chains" / "arm3.yaml"


def run_fast(**params) -> SimImu:
    node = SimImu.create("sim", chain=str(ARM3), speed=0.0, **params)
    node.on_start()
    while node.poll(0.05):
        pass
    return node


def test_as_fast_as_possible_emits_every_sample_per_sensor_with_truth():
    node = run_fast(duration_s=2.0, rate_hz=100.0, block=7)
    raw = [b for b in node.emitted if b.topic == f"sim/{RAW_IMU}"]
    truth = [b for b in node.emitted if b.topic == f"sim/{TRUTH}"]
    sources = {b.info.source for b in raw}
    assert sources == {"seg1", "seg3"}  # arm3: IMUs on the outer segments only
    for name in sources:
        samples = np.concatenate([b.data for b in raw if b.info.source == name])
        assert len(samples) == 200
        np.testing.assert_array_equal(samples["counter"], np.arange(200))
        assert np.all(np.diff(samples["t_sensor"]) > 0)
        assert np.all(np.isnan(samples["mag"]))
        norm = np.linalg.norm(samples["acc"], axis=1)
        assert 2.0 < np.median(norm) < 20.0  # gravity plus motion, m/s^2
    t = np.concatenate([b.data for b in truth])
    assert len(t) == 200
    np.testing.assert_allclose(np.linalg.norm(t["q_rel"], axis=-1), 1.0, atol=1e-5)


def test_device_clocks_drift_and_offset_per_sensor():
    node = run_fast(duration_s=10.0, clock_drift_ppm=50.0, clock_offset_s=2.0, seed=3)
    raw = [b for b in node.emitted if b.topic == f"sim/{RAW_IMU}"]
    rates = {}
    for name in ("seg1", "seg3"):
        s = np.concatenate([b.data for b in raw if b.info.source == name])
        slope = np.polyfit(s["t_host"] - s["t_host"][0], s["t_sensor"] - s["t_sensor"][0], 1)[0]
        rates[name] = slope
        assert abs(slope - 1) < 51e-6
    assert rates["seg1"] != rates["seg3"]


def test_same_seed_same_data_and_ideal_sensors_without_noise():
    a = run_fast(duration_s=1.0, seed=5, noise=False)
    b = run_fast(duration_s=1.0, seed=5, noise=False, block=13)
    acc_a = np.concatenate([x.data["acc"] for x in a.emitted if x.topic == "sim/imu.raw"
                            and x.info.source == "seg3"])
    acc_b = np.concatenate([x.data["acc"] for x in b.emitted if x.topic == "sim/imu.raw"
                            and x.info.source == "seg3"])
    np.testing.assert_allclose(acc_a, acc_b, atol=1e-4)


def test_real_time_speed_factor_paces_the_stream():
    node = SimImu.create("sim", chain=str(ARM3), speed=4.0, rate_hz=100.0)
    node.on_start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        node.poll(0.02)
    elapsed = time.monotonic() - t0
    n = sum(b.n for b in node.emitted if b.topic == "sim/chain.truth")
    # never ahead of 4x the wall clock (plus a block of 0.1 s): holds under any load; at least
    # a third of the 200 frames due (a 3x margin for a loaded CI machine) is still more than
    # speed 1 could give (50)
    assert 200 / 3 <= n <= elapsed * 100 * 4 + 40, (n, elapsed)


def test_fk_node_turns_truth_into_world_poses():
    sim = run_fast(duration_s=0.5, seed=1)
    fk = ForwardKinematics.create("fk", chain=str(ARM3), root_position=(0.0, 0.0, 0.0))
    truth = [b for b in sim.emitted if b.topic == "sim/chain.truth"]
    for blk in truth:
        fk.on_block("state", blk)
    poses = np.concatenate([b.data for b in fk.emitted if b.topic == f"fk/{POSE}"])
    q_rel = np.concatenate([b.data["q_rel"] for b in truth]).astype(np.float64)
    kin = Kinematics(load_chain(ARM3))
    pos, quat = kin.forward_rel(q_rel, np.zeros((len(q_rel), 3)))
    np.testing.assert_allclose(poses["pos"], pos, atol=1e-5)
    np.testing.assert_allclose(poses["quat"], quat, atol=1e-5)
    np.testing.assert_array_equal(poses["t_host"], np.concatenate([b.data["t_host"]
                                                                    for b in truth]))


def test_sim_without_chain_names_the_fix():
    from pipeline.runtime.errors import ConfigError
    with pytest.raises(ConfigError, match="no chain: set params.chain or the graph's `chain:`"):
        SimImu.create("sim")


def test_walking_procedure_walks_a_knee_and_refuses_other_chains():
    knee = REPO / "configs" / "chains" / "knee.yaml"
    node = SimImu.create("sim", chain=str(knee), speed=0.0, duration_s=30.0, seed=4,
                         procedure="walking")
    node.on_start()
    while node.poll(0.05):
        pass
    truth = np.concatenate([b.data for b in node.emitted if b.topic == f"sim/{TRUTH}"])
    knee_deg = np.degrees(truth["angle"][:, 0])
    swings = np.flatnonzero((knee_deg[1:-1] > 45) & (knee_deg[1:-1] >= knee_deg[:-2])
                            & (knee_deg[1:-1] > knee_deg[2:]))
    assert len(swings) >= 8  # a swing-phase flexion peak per stride
    with pytest.raises(ConfigError, match="procedure 'walking'.*knee hinge.*arm3"):
        SimImu.create("sim", chain=str(ARM3), procedure="walking")
