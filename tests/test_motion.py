"""Random motion generator: reproducible, inside limits, smooth, with rests and varied speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.kinematics.chain import JointType, load_chain
from pipeline.kinematics.motion import (
    Channel,
    MotionSettings,
    generate_motion,
    random_channel,
    sample_motion,
)
from pipeline.kinematics.quaternion import np_qconj, np_qmul, np_qrotate

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"


def test_same_seed_same_motion_other_seed_differs() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    t, q1, _ = sample_motion(chain, 5.0, 100.0, seed=7)
    _, q2, _ = sample_motion(chain, 5.0, 100.0, seed=7)
    _, q3, _ = sample_motion(chain, 5.0, 100.0, seed=8)
    assert t.shape == (500,) and q1.shape == (500, chain.nq)
    assert np.array_equal(q1, q2)
    assert not np.allclose(q1, q3)


@pytest.mark.parametrize("name", ["knee", "arm3", "lower_body", "chain24"])
def test_joints_stay_inside_limits_and_quaternions_are_unit(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    _, q, _ = sample_motion(chain, 60.0, 200.0, seed=1)
    for i, body in enumerate(chain.bodies):
        s, j = chain.q_start[i], body.joint
        if j.type in (JointType.HINGE, JointType.PRISMATIC) and j.limits:
            lo, hi = j.limits
            assert q[:, s].min() >= lo - 1e-9 and q[:, s].max() <= hi + 1e-9, body.name
            assert q[:, s].max() - q[:, s].min() > 0.5 * (hi - lo), f"{body.name} barely moves"
        if j.type == JointType.FREE:
            np.testing.assert_allclose(np.linalg.norm(q[:, s + 3:s + 7], axis=1), 1.0, atol=1e-12)
        if j.type == JointType.SPHERICAL:
            np.testing.assert_allclose(np.linalg.norm(q[:, s:s + 4], axis=1), 1.0, atol=1e-12)


def test_arm3_hinges_cover_nearly_the_full_circle() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    _, q, _ = sample_motion(chain, 120.0, 100.0, seed=2)
    for s in chain.q_start[chain.hinge_bodies]:
        assert q[:, s].max() - q[:, s].min() > 5.5  # of 6.0 rad range


def test_root_rotates_about_all_axes_and_translates() -> None:
    chain = load_chain(CHAINS / "knee.yaml")
    _, q, _ = sample_motion(chain, 60.0, 50.0, seed=3)
    quat = q[:, 3:7]
    up = np_qrotate(quat, np.array([0.0, 0.0, 1.0]))      # body z in world
    fwd = np_qrotate(quat, np.array([1.0, 0.0, 0.0]))
    assert up[:, 2].min() < np.cos(0.8)                   # inclination well away from upright
    assert np.ptp(np.arctan2(fwd[:, 1], fwd[:, 0])) > 3.0  # heading turns
    assert (np.ptp(q[:, :3], axis=0) > 0.2).all()         # translation on all axes


def test_rests_and_varied_speed() -> None:
    chain = load_chain(CHAINS / "knee.yaml")
    ms = MotionSettings(rest_prob=0.5)
    _, _, qd = sample_motion(chain, 120.0, 100.0, seed=4, settings=ms)
    speed = np.abs(qd[:, 6])  # knee hinge rate, rad/s
    resting = speed < 1e-9
    assert 0.05 < resting.mean() < 0.9
    moving = speed[~resting]
    assert np.percentile(moving, 95) > 5 * np.percentile(moving, 25)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_channel_derivatives_are_analytic_and_continuous(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ch = random_channel(rng, -1.0, 2.0, 10.0, MotionSettings(), 5.0, 60.0)
    assert isinstance(ch, Channel)
    t = np.linspace(0.01, 9.99, 997)
    h = 1e-5
    num_v = (ch(t + h) - ch(t - h)) / (2 * h)
    num_a = (ch(t + h, 1) - ch(t - h, 1)) / (2 * h)
    np.testing.assert_allclose(ch(t, 1), num_v, atol=1e-5)
    np.testing.assert_allclose(ch(t, 2), num_a, atol=1e-3)
    k = ch.t[1:-1]
    # C2 at knots: value, velocity and acceleration continuous
    for d, tol in ((0, 1e-9), (1, 1e-6), (2, 1e-4)):
        np.testing.assert_allclose(ch(k - 1e-10, d), ch(k + 1e-10, d), atol=tol)
    v = ch(np.linspace(0, 10, 5001))
    assert v.min() >= -1.0 - 1e-12 and v.max() <= 2.0 + 1e-12


def test_qd_matches_finite_differences_for_free_and_hinge() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    m = generate_motion(chain, 10.0, 11)
    t = np.linspace(0.5, 9.5, 200)
    qd = m.qd(t)
    dt = 1e-6
    qa, qb = m.q(t - dt), m.q(t + dt)
    np.testing.assert_allclose(qd[:, 6:8], (qb[:, 7:9] - qa[:, 7:9]) / (2 * dt), atol=1e-4)
    np.testing.assert_allclose(qd[:, :3], (qb[:, :3] - qa[:, :3]) / (2 * dt), atol=1e-4)
    # body rate: q(t+dt) ~ q(t) * exp(w dt)
    dq = np_qmul(np_qconj(qa[:, 3:7]), qb[:, 3:7])
    np.testing.assert_allclose(qd[:, 3:6], 2 * dq[:, 1:] / (2 * dt), atol=1e-3)


def test_qdd_of_hinge_is_analytic_and_matches_qd_differences() -> None:
    chain = load_chain(CHAINS / "knee.yaml")
    m = generate_motion(chain, 10.0, 12)
    t = np.linspace(0.5, 9.5, 300)
    qdd = m.qdd(t)
    h = 1e-5
    np.testing.assert_allclose(qdd[:, 6], (m.qd(t + h)[:, 6] - m.qd(t - h)[:, 6]) / (2 * h), atol=1e-3)
    assert np.abs(qdd[:, 6]).max() > 1.0


def test_start_still_holds_the_zero_pose_then_moves_on() -> None:
    chain = load_chain(CHAINS / "lower_body.yaml")
    still = generate_motion(chain, 20.0, 3, MotionSettings(start_still_s=3.0))
    q = still.q(np.linspace(0.0, 3.0, 61))
    assert np.array_equal(q, np.tile(q[0], (61, 1)))  # held still
    # the zero pose: no translation, identity root and hip quaternions, hinges at 0
    zero = np.concatenate([[0, 0, 0, 1, 0, 0, 0]] + [
        [1, 0, 0, 0] if chain.joint_types[b] == JointType.SPHERICAL else [0]
        for b in range(1, chain.n_bodies)])
    np.testing.assert_allclose(q[0], zero, atol=1e-12)
    assert np.abs(still.q(np.array([8.0]))[0] - zero).max() > 0.1  # then it moves
    # without the option the motion starts in a random pose
    default = generate_motion(chain, 20.0, 3)
    assert not np.allclose(default.q(np.array([0.0])), zero)
