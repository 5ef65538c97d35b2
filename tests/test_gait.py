"""Gait motion for the knee (walking and running bouts) and heel-strike shocks at the sensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.gait import GaitSettings, gait_motion, heel_strike_shocks
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate

REPO = Path(__file__).resolve().parents[1]
KNEE = load_chain(REPO / "configs/chains/knee.yaml")


@pytest.mark.parametrize("seed", range(6))
def test_strides_look_like_gait(seed: int) -> None:
    gait = gait_motion(KNEE, 60.0, seed)
    t = np.arange(0, 60.0, 0.01)
    knee = np.degrees(gait.q(t)[:, 7])
    lo, hi = np.degrees(KNEE.bodies[1].joint.limits)
    assert lo <= knee.min() and knee.max() <= hi
    period = np.diff(gait.heel_strikes)
    within_bout = period < 1.5  # the gaps that span a rest are longer
    assert within_bout.sum() >= 10
    assert np.all((period[within_bout] >= 0.58) & (period[within_bout] <= 1.53))
    # one swing-phase flexion peak per stride: 50-72 deg walking, 80-125 deg running
    peaks, _ = find_peaks(knee, prominence=25.0)
    walk_peaks = [knee[p] for p in peaks
                  if not gait.running[max(np.searchsorted(gait.heel_strikes, t[p]) - 1, 0)]]
    if walk_peaks:
        assert 45.0 <= np.median(walk_peaks) <= 75.0
    assert abs(len(peaks) - len(gait.heel_strikes)) <= 0.15 * len(gait.heel_strikes) + 2


def test_walking_signals_are_in_the_range_of_real_walking() -> None:
    """Shank and thigh gyro and shank accelerometer over walking strides without shocks: from
    slow walking as in the Movella DOT recording knee_tracking1 (shank |gyr| p99 6.1 rad/s,
    |acc| p99 17 m/s^2; thigh |gyr| p99 3.7 rad/s) to fast walking (shank swing rates to
    about 8 rad/s)."""
    gait = gait_motion(KNEE, 60.0, 0, GaitSettings(run_prob=0.0))
    rec = simulate(KNEE, 60.0, 100.0, 0, ImuNoise.none(), SimSettings(), motion=gait)
    walking = np.zeros(len(rec.t), bool)
    for strike in gait.heel_strikes:
        walking |= (rec.t >= strike) & (rec.t < strike + 0.8)
    gyr = np.linalg.norm(rec.gyr[walking], axis=-1)
    acc = np.linalg.norm(rec.acc[walking], axis=-1)
    thigh, shank = rec.imu_names.index("thigh"), rec.imu_names.index("shank")
    assert 4.0 < np.percentile(gyr[:, shank], 99) < 10.0
    assert 2.0 < np.percentile(gyr[:, thigh], 99) < 5.0
    assert 14.0 < np.percentile(acc[:, shank], 99) < 40.0


def test_shocks_ring_after_heel_strikes_and_hit_the_shank_hardest() -> None:
    gait = gait_motion(KNEE, 30.0, 1)
    t = np.arange(0, 30.0, 0.01)
    rotations = np.array([[1.0, 0, 0, 0], [0.0, 1, 0, 0]])  # shank sensor upside down
    acc, gyr = heel_strike_shocks(t, gait, rotations, 2)
    after = np.zeros(len(t), bool)
    for strike in gait.heel_strikes:
        after |= (t >= strike) & (t < strike + 0.15)
    assert np.all(acc[~after] == 0) and np.all(gyr[~after] == 0)
    size = np.linalg.norm(acc, axis=-1)
    thigh, shank = KNEE.imu_names.index("thigh"), KNEE.imu_names.index("shank")
    assert size[:, shank].max() > 3.0
    assert size[:, shank].sum() > 1.5 * size[:, thigh].sum()
    # mostly along the segment: body z, which the flipped shank sensor sees as -z
    mean_dir = np.abs(acc[after, shank]).mean(0)
    assert mean_dir[2] > max(mean_dir[0], mean_dir[1])
    # rings down: the last 50 ms after a strike hold far less than the first 50 ms
    i = np.searchsorted(t, gait.heel_strikes[3])
    assert size[i + 10:i + 15, shank].max() < 0.5 * size[i:i + 5, shank].max()


def test_refuses_a_chain_that_is_not_a_knee() -> None:
    arm = load_chain(REPO / "configs/chains/arm3.yaml")
    with pytest.raises(ValueError, match="free thigh and a knee hinge.*arm3"):
        gait_motion(arm, 10.0, 0)
