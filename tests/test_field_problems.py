"""The field problems' randomisation (tools/training/problem.py): segment lengths, IMU sites,
dropped samples and the share of walking sequences, each drawn per sequence from its seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.kinematics.chain import load_chain
from tools.training.data import generate
from tools.training.problem import get_problem

REPO = Path(__file__).resolve().parents[1]


def test_chain_for_scales_segments_and_moves_imus_per_seed() -> None:
    problem = get_problem("arm3-field")
    chain = load_chain(REPO / problem.chain)
    a, b = problem.chain_for(chain, 1), problem.chain_for(chain, 2)
    assert problem.chain_for(chain, 1) == a  # reproducible
    assert a != b
    lo, hi = problem.segment_scale
    for body, scaled in zip(chain.bodies[1:], a.bodies[1:]):
        ratio = np.linalg.norm(scaled.joint.offset) / np.linalg.norm(body.joint.offset)
        assert lo <= ratio <= hi
    for imu, moved in zip(chain.imus, a.imus):
        along = np.argmax(np.abs(imu.position))
        across = [k for k in range(3) if k != along]
        shift = np.abs(np.subtract(moved.position, imu.position))[across]
        assert 0 < shift.max() <= problem.imu_lateral_m + 1e-12
    plain = get_problem("arm3-sparse")
    assert plain.chain_for(chain, 1) is chain


def test_dropped_samples_are_bridged_by_straight_lines() -> None:
    problem = get_problem("arm3-field")
    t = np.arange(2000) / 100.0
    x = np.stack([np.sin(2 * np.pi * f * t) for f in np.linspace(0.3, 2.0, 12)], axis=1)
    y = problem.drop_samples(x, 5)
    changed = np.flatnonzero(np.any(y != x, axis=1))
    assert 0 < len(changed) < 0.1 * len(t)
    assert not np.any(y[:, :6] != x[:, :6], axis=1)[0]  # the first sample is never lost
    assert np.array_equal(y, problem.drop_samples(x, 5))
    # each IMU's gaps: straight lines from the sample before to the sample after
    runs = linear = 0
    for cols in (slice(0, 6), slice(6, 12)):
        gap = np.any(y[:, cols] != x[:, cols], axis=1)
        edges = np.flatnonzero(np.diff(gap.astype(int)))
        for a, b in zip(edges[::2] + 1, edges[1::2] + 1):  # gap rows a..b-1
            w = ((np.arange(a, b) - (a - 1)) / (b - (a - 1)))[:, None]
            line = (1 - w) * y[a - 1, cols] + w * y[b, cols]
            runs += 1
            linear += np.allclose(y[a:b, cols], line, atol=1e-12)
            assert b - a <= 2 * problem.drop_max
    assert runs >= 5 and linear >= 0.9 * runs
    assert np.array_equal(get_problem("arm3-sparse").drop_samples(x, 5), x)


def test_knee_walk_sequences_walk_and_carry_heel_strike_shocks() -> None:
    problem = get_problem("knee-walk")
    seeds = np.arange(40)
    walking = [problem.gait_for(load_chain(REPO / problem.chain), int(s), 10.0) is not None
               for s in seeds]
    assert 0.2 <= np.mean(walking) <= 0.6
    assert get_problem("knee-field").gait_for(load_chain(REPO / problem.chain), 0, 10.0) is None
    gait_seed, other = int(seeds[np.argmax(walking)]), int(seeds[np.argmin(walking)])
    ds = generate(problem, [gait_seed, other], 30.0, progress=False)
    assert np.isfinite(ds.imu).all()
    knee = 2 * np.degrees(np.arccos(np.clip(np.abs(ds.q_rel[:, :, 1, 0]), 0, 1)))
    # walking: a swing flexion peak above 45 deg about every stride
    peaks = np.flatnonzero((knee[0, 1:-1] > 45) & (knee[0, 1:-1] >= knee[0, :-2])
                           & (knee[0, 1:-1] > knee[0, 2:]))
    assert len(peaks) >= 8
    assert "gait" in problem.describe()
    assert "gait" not in get_problem("knee-field").describe()


def test_sensor_bandwidth_is_drawn_per_sequence_only_where_the_problem_asks() -> None:
    """arm3-band: 70 % of the sequences low-pass their sensors at 8-40 Hz, and the data
    differs from arm3-wide's only there; problems without it keep ideal bandwidth."""
    band, wide = get_problem("arm3-band"), get_problem("arm3-wide")
    cutoffs = np.array([band.sim_settings(s).bandwidth_hz for s in range(400)])
    filtered = np.isfinite(cutoffs)
    assert 0.63 < filtered.mean() < 0.77
    assert cutoffs[filtered].min() >= 8.0 and cutoffs[filtered].max() <= 40.0
    assert all(np.isinf(wide.sim_settings(s).bandwidth_hz) for s in range(50))
    seeds = [int(np.flatnonzero(filtered)[0]), int(np.flatnonzero(~filtered)[0])]
    a, b = generate(band, seeds, 5.0, progress=False), generate(wide, seeds, 5.0, progress=False)
    assert not np.allclose(a.imu[0], b.imu[0], atol=1e-3)
    np.testing.assert_array_equal(a.imu[1], b.imu[1])
    np.testing.assert_array_equal(a.q_rel, b.q_rel)
    assert a.settings["sensor_bandwidth"]["cutoff_hz"] == [8.0, 40.0]


def test_vibration_is_drawn_per_sequence_only_where_the_problem_asks() -> None:
    """arm3-vib: half of the sequences are shaken (root acceleration 1-8 m/s^2 rms at 3-15 Hz)
    and only those differ from arm3-wide's, in the signals and (slightly) in the truth."""
    vib, wide = get_problem("arm3-vib"), get_problem("arm3-wide")
    drawn = [vib.vibration_for(s) for s in range(400)]
    shaken = np.array([d is not None for d in drawn])
    assert 0.42 < shaken.mean() < 0.58
    sizes = [d.acc_rms_ms2 for d in drawn if d is not None]
    assert 1.0 <= min(sizes) and max(sizes) <= 8.0
    assert all(wide.vibration_for(s) is None for s in range(50))
    seeds = [int(np.flatnonzero(shaken)[0]), int(np.flatnonzero(~shaken)[0])]
    a, b = generate(vib, seeds, 5.0, progress=False), generate(wide, seeds, 5.0, progress=False)
    assert np.abs(a.imu[0] - b.imu[0]).max() > 1.0
    assert not np.array_equal(a.q_rel[0], b.q_rel[0])
    np.testing.assert_array_equal(a.imu[1], b.imu[1])
    np.testing.assert_array_equal(a.q_rel[1], b.q_rel[1])
    assert a.settings["vibration"]["root_acc_rms_ms2"] == [1.0, 8.0]


def test_arm3_vib_band_shakes_and_filters_independently() -> None:
    """arm3-vib-band: half of the sequences shaken, half filtered at 8-40 Hz, drawn apart, so
    a quarter are both and a quarter neither."""
    problem = get_problem("arm3-vib-band")
    drawn = np.array([[problem.vibration_for(s) is not None,
                       np.isfinite(problem.sim_settings(s).bandwidth_hz)] for s in range(800)])
    assert np.all(np.abs(drawn.mean(axis=0) - 0.5) < 0.07)
    assert abs((drawn[:, 0] & drawn[:, 1]).mean() - 0.25) < 0.06
    assert abs((~drawn[:, 0] & ~drawn[:, 1]).mean() - 0.25) < 0.06
