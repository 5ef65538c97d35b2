"""IMU synthesis: gravity at rest, hinge rates, gyro integration, accelerations, noise model."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import rel_to_hinge
from pipeline.kinematics.imu_synth import (
    ImuNoise,
    ImuSimulator,
    SimSettings,
    sensor_signals_into,
    sensor_signals_np,
    simulate,
)
from pipeline.kinematics.quaternion import (
    np_qangle,
    np_qconj,
    np_qfrom_axis_angle,
    np_qfrom_rotvec,
    np_qmul,
    np_qnormalize,
    np_qrotate,
)

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"
EXACT = SimSettings(placement_jitter_m=0.0)
G = np.array([0.0, 0.0, 9.81])


class KneeMotion:
    """Thigh fixed at a tilted orientation, knee angle = angle0 + rate_rad_s * t."""

    def __init__(self, root_quat: np.ndarray, angle0: float, rate_rad_s: float) -> None:
        self.root_quat, self.angle0, self.rate = root_quat, angle0, rate_rad_s

    def q(self, t: np.ndarray) -> np.ndarray:
        q = np.zeros((len(t), 8))
        q[:, 3:7] = self.root_quat
        q[:, 7] = self.angle0 + self.rate * t
        return q


@pytest.fixture(scope="module")
def knee():
    return load_chain(CHAINS / "knee.yaml")


def test_body_at_rest_reads_gravity_in_sensor_frame(knee) -> None:
    root = np_qfrom_axis_angle(np.array([1.0, 2.0, 0.5]) / math.sqrt(5.25), 0.9)
    rec = simulate(knee, 2.0, 100.0, seed=1, noise=ImuNoise.none(), settings=EXACT,
                   motion=KneeMotion(root, 0.7, 0.0))
    shank = np_qmul(root, np_qfrom_axis_angle(np.array([0.0, 1.0, 0.0]), 0.7))
    for j, q_sensor in enumerate([root, shank]):
        expect = np_qrotate(np_qconj(q_sensor), G)  # R^T (0 - g), g = (0, 0, -9.81)
        np.testing.assert_allclose(rec.acc[:, j], np.broadcast_to(expect, (200, 3)), atol=1e-4)
        np.testing.assert_allclose(rec.gyr[:, j], 0.0, atol=1e-6)
    assert rec.acc.dtype == np.float32 and rec.gyr.dtype == np.float32
    assert np.linalg.norm(rec.acc, axis=-1) == pytest.approx(9.81, abs=1e-4)


def test_upright_sensor_reads_plus_g_on_up_axis(knee) -> None:
    rec = simulate(knee, 0.5, 100.0, seed=1, noise=ImuNoise.none(), settings=EXACT,
                   motion=KneeMotion(np.array([1.0, 0, 0, 0]), 0.0, 0.0))
    np.testing.assert_allclose(rec.acc[:, 0], np.broadcast_to([0, 0, 9.81], (50, 3)), atol=1e-4)


def test_hinge_turning_at_known_rate_reads_that_rate(knee) -> None:
    rate = 1.7  # rad/s about the knee's y axis
    root = np_qfrom_axis_angle(np.array([0.0, 0.0, 1.0]), 0.4)
    rec = simulate(knee, 3.0, 100.0, seed=2, noise=ImuNoise.none(), settings=EXACT,
                   motion=KneeMotion(root, -0.3, rate))
    np.testing.assert_allclose(rec.gyr[:, 1], np.broadcast_to([0, rate, 0], (300, 3)), atol=1e-5)
    np.testing.assert_allclose(rec.gyr[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(rec.joint_angles[:, 0], -0.3 + rate * rec.t, atol=1e-12)
    # centripetal acceleration towards the hinge axis: |a| = rate^2 * distance
    site = rec.imu_positions[1] - np.array([0.0, 0.0, 0.0])  # hinge at shank origin
    r_perp = np.hypot(site[0], site[2])
    a_world = np_qrotate(rec.imu_q_world[:, 1], rec.acc[:, 1].astype(np.float64)) - G
    np.testing.assert_allclose(np.linalg.norm(a_world, axis=1), rate**2 * r_perp, atol=1e-4)


def _rk4_integrate(q0: np.ndarray, w: np.ndarray, dt: float) -> np.ndarray:
    """Integrate q' = q * (0, w) / 2 with RK4; mid-step rates by 4-point cubic interpolation."""
    wp = np.concatenate([w[:1], w, w[-1:]])  # pad for the interpolation stencil
    out = np.empty((len(w), 4))
    out[0] = q = q0

    def f(q: np.ndarray, om: np.ndarray) -> np.ndarray:
        return 0.5 * np_qmul(q, np.concatenate([[0.0], om]))

    for k in range(len(w) - 1):
        w0, w1 = w[k], w[k + 1]
        wm = (-wp[k] + 9 * wp[k + 1] + 9 * wp[k + 2] - wp[k + 3]) / 16.0
        k1 = f(q, w0)
        k2 = f(q + 0.5 * dt * k1, wm)
        k3 = f(q + 0.5 * dt * k2, wm)
        k4 = f(q + dt * k3, w1)
        out[k + 1] = q = np_qnormalize(q + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))
    return out


def test_noise_free_gyro_integration_recovers_orientation() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    rec = simulate(chain, 10.0, 100.0, seed=3, noise=ImuNoise.none(), settings=EXACT)
    for j in range(len(rec.imu_names)):
        w = rec.gyr[:, j].astype(np.float64)
        assert np.abs(w).max() > 3.0  # the test needs real motion
        q = _rk4_integrate(rec.imu_q_world[0, j], w, 1.0 / rec.rate_hz)
        worst = math.degrees(np_qangle(q, rec.imu_q_world[:, j]).max())
        assert worst < 0.1, f"{rec.imu_names[j]}: {worst:.3f} deg"
    # and the orientation really changes a lot, so 0.1 deg is a meaningful bound
    assert math.degrees(np_qangle(rec.imu_q_world[0, 1], rec.imu_q_world[:, 1]).max()) > 90


@pytest.mark.parametrize("name", ["arm3", "lower_body"])
def test_finite_differences_of_positions_match_accelerations(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    rate = 1000.0
    rec = simulate(chain, 4.0, rate, seed=4, noise=ImuNoise.none())
    p = rec.imu_pos_world
    a_fd = (p[2:] - 2 * p[1:-1] + p[:-2]) * rate**2
    a_sim = np_qrotate(rec.imu_q_world[1:-1], rec.acc[1:-1].astype(np.float64)) - G
    assert np.abs(a_sim).max() > 5.0
    np.testing.assert_allclose(a_sim, a_fd, atol=0.02)


def test_ground_truth_is_consistent() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    rec = simulate(chain, 3.0, 50.0, seed=5, noise=ImuNoise(), settings=SimSettings())
    T, n = len(rec.t), chain.n_bodies
    assert rec.q_rel.shape == (T, n, 4) and rec.q_world.shape == (T, n, 4)
    assert rec.pos_world.shape == (T, n, 3) and rec.joint_angles.shape == (T, 2)
    assert rec.imu_names == ("seg1", "seg3") and rec.hinge_names == ("seg2", "seg3")
    np.testing.assert_allclose(rec.q_world[:, 1], np_qmul(rec.q_world[:, 0], rec.q_rel[:, 1]), atol=1e-12)
    hb = chain.hinge_bodies
    np.testing.assert_allclose(rel_to_hinge(rec.q_rel[:, hb], chain.rotations[hb], chain.axes[hb]),
                               rec.joint_angles, atol=1e-9)
    b = chain.imu_bodies
    np.testing.assert_allclose(rec.imu_pos_world,
                               rec.pos_world[:, b] + np_qrotate(rec.q_world[:, b], rec.imu_positions),
                               atol=1e-12)
    np.testing.assert_allclose(rec.t, np.arange(150) / 50.0)


def test_placement_varies_along_segment_per_seed() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    xs = [simulate(chain, 0.1, 100.0, seed=s).imu_positions for s in range(20)]
    xs = np.stack(xs)
    assert np.ptp(xs[:, :, 0]) > 0.05 and np.abs(xs[:, :, 0] - 0.1).max() <= 0.05
    np.testing.assert_allclose(xs[:, :, 1:], 0.0)  # only along the segment (x)


def test_noise_model_statistics_and_reproducibility(knee) -> None:
    motion = KneeMotion(np.array([1.0, 0, 0, 0]), 0.5, 0.0)
    rate = 100.0
    white = replace(ImuNoise.none(), acc_noise_density=0.005, gyr_noise_density=math.radians(0.07))
    rec = simulate(knee, 200.0, rate, seed=6, noise=white, settings=EXACT, motion=motion)
    ideal = simulate(knee, 200.0, rate, seed=6, noise=ImuNoise.none(), settings=EXACT, motion=motion)
    assert np.std(rec.acc - ideal.acc) == pytest.approx(0.05, rel=0.03)
    assert np.std(rec.gyr - ideal.gyr) == pytest.approx(math.radians(0.7), rel=0.03)
    again = simulate(knee, 200.0, rate, seed=6, noise=white, settings=EXACT, motion=motion)
    assert np.array_equal(again.acc, rec.acc)
    biased = simulate(knee, 20.0, rate, seed=7, noise=replace(ImuNoise.none(), gyr_bias_max=0.05),
                      settings=EXACT, motion=motion)
    np.testing.assert_allclose(biased.gyr, np.broadcast_to(biased.gyr_bias, biased.gyr.shape), atol=1e-6)
    assert np.abs(biased.gyr_bias).max() <= 0.05 and np.abs(biased.gyr_bias).max() > 0.005


def test_saturation_and_bias_walk(knee) -> None:
    motion = KneeMotion(np.array([1.0, 0, 0, 0]), 0.0, 30.0)  # 30 rad/s knee spin
    sat = replace(ImuNoise.none(), gyr_range=10.0, acc_range=50.0)
    rec = simulate(knee, 1.0, 100.0, seed=8, noise=sat, settings=EXACT, motion=motion)
    assert rec.gyr[:, 1, 1].max() == pytest.approx(10.0) and np.abs(rec.acc).max() <= 50.0
    walk = replace(ImuNoise.none(), gyr_bias_walk=0.01)
    rec = simulate(knee, 400.0, 100.0, seed=9, noise=walk, settings=EXACT,
                   motion=KneeMotion(np.array([1.0, 0, 0, 0]), 0.0, 0.0))
    drift = rec.gyr[-1, :, :] - rec.gyr[0, :, :]
    assert 0.05 < np.abs(drift).mean() < 1.0  # ~0.01 * sqrt(400) = 0.2 rad/s typical


def test_blocks_continue_one_recording() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    a = ImuSimulator(chain, 100.0, seed=10, noise=ImuNoise.none(), duration_s=60.0)
    b = ImuSimulator(chain, 100.0, seed=10, noise=ImuNoise.none(), duration_s=60.0)
    one = a.next_block(300)
    first, second = b.next_block(120), b.next_block(180)
    np.testing.assert_array_equal(np.concatenate([first.acc, second.acc]), one.acc)
    np.testing.assert_array_equal(np.concatenate([first.t, second.t]), one.t)


class KneeStartsTurning:
    """Thigh upright and still; the knee still until 1 s, then turning at ``rate_rad_s``."""

    def __init__(self, rate_rad_s: float) -> None:
        self.rate = rate_rad_s

    def q(self, t: np.ndarray) -> np.ndarray:
        q = np.zeros((len(t), 8))
        q[:, 3] = 1.0
        q[:, 7] = self.rate * np.maximum(t - 1.0, 0.0)
        return q


def _shank_gyr_y(knee, bandwidth_hz: float, blocks: tuple[int, ...] = (300,)) -> np.ndarray:
    sim = ImuSimulator(knee, 100.0, seed=1, noise=ImuNoise.none(), duration_s=4.0,
                       settings=replace(EXACT, bandwidth_hz=bandwidth_hz),
                       motion=KneeStartsTurning(2.0))
    return np.concatenate([sim.next_block(n).gyr[:, 1, 1] for n in blocks])


def test_sensor_bandwidth_delays_fast_changes_and_keeps_slow_ones(knee) -> None:
    """A sensor's internal low-pass (2nd-order Butterworth): the step of the knee's rate comes
    later the lower the cutoff; at rest and once settled the reading is the true one (no
    start-up transient, gain 1); blocks continue the filter's state."""
    ideal = _shank_gyr_y(knee, math.inf)
    t = np.arange(300) / 100.0

    def half_way(g: np.ndarray) -> float:  # the rate steps from 0 to 2 rad/s at 1 s
        k = int(np.argmax(g > 1.0))
        return float(t[k - 1] + (1.0 - g[k - 1]) / (g[k] - g[k - 1]) * (t[k] - t[k - 1]))

    delays = {}
    for cutoff in (8.0, 25.0):
        g = _shank_gyr_y(knee, cutoff)
        np.testing.assert_allclose(g[t < 1.0], ideal[t < 1.0], atol=1e-9)
        np.testing.assert_allclose(g[t > 1.8], ideal[t > 1.8], atol=1e-3)
        delays[cutoff] = half_way(g) - half_way(ideal)
        np.testing.assert_array_equal(_shank_gyr_y(knee, cutoff, (120, 5, 175)), g)
    # the filter's group delay at low frequencies: sqrt(2) / (2 pi cutoff), 9 and 28 ms
    assert 0.004 < delays[25.0] < 0.015 and 0.015 < delays[8.0] < 0.045, delays


def test_sensor_bandwidth_above_nyquist_is_refused(knee) -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        ImuSimulator(knee, 100.0, seed=1, settings=SimSettings(bandwidth_hz=60.0))


def test_random_mounting_rotation_is_reported_and_consistent(knee) -> None:
    root = np_qfrom_axis_angle(np.array([0.0, 1.0, 0.0]), 0.3)
    rec = simulate(knee, 0.5, 100.0, seed=11, noise=ImuNoise.none(),
                   settings=SimSettings(placement_jitter_m=0.0, mount_rotation_max_rad=0.5),
                   motion=KneeMotion(root, 0.2, 0.0))
    angles = np_qangle(rec.imu_rotations, np.array([1.0, 0, 0, 0]))
    assert (angles > 0).all() and (angles <= 0.5 + 1e-12).all()
    np.testing.assert_allclose(rec.imu_q_world[:, 0], np.broadcast_to(np_qmul(root, rec.imu_rotations[0]), (50, 4)), atol=1e-12)
    expect = np_qrotate(np_qconj(rec.imu_q_world[0, 0]), G)
    np.testing.assert_allclose(rec.acc[:, 0], np.broadcast_to(expect, (50, 3)), atol=1e-4)


def test_sensor_kernel_equals_numpy_reference() -> None:
    rng = np.random.default_rng(12)
    n, m, h = 50, 3, 1e-3
    spos = rng.normal(size=(3 * n, m, 3))
    squat = np_qnormalize(rng.normal(size=(3 * n, m, 4)))
    squat[2 * n:] = np_qmul(squat[:n], np_qfrom_rotvec(rng.normal(scale=0.01, size=(n, m, 3))))
    squat[2 * n:] *= np.where(rng.random((n, m, 1)) < 0.5, -1.0, 1.0)  # sign ambiguity
    acc, gyr = np.empty((n, m, 3)), np.empty((n, m, 3))
    sensor_signals_into(spos, squat, n, h, 9.81, acc, gyr)
    ref_acc, ref_gyr = sensor_signals_np(spos, squat, n, h, 9.81)
    np.testing.assert_allclose(acc, ref_acc, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(gyr, ref_gyr, rtol=1e-9, atol=1e-9)
