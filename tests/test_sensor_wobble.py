"""IMUs turning against their segments: the sensors see the turn (about the segment's long axis
most), the truth and the sensor positions do not; seeded; bad settings refused; drawn per
sequence only where a training problem asks."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import ImuNoise, ImuSimulator, SimSettings
from pipeline.kinematics.quaternion import np_qangle, np_qconj, np_qfrom_rotvec, np_qmul
from pipeline.kinematics.sensor_wobble import SensorWobble, SensorWobbleSettings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from training.problem import get_problem  # noqa: E402


class StillKnee:
    """The knee chain held still: thigh upright at 1 m, knee at 0.5 rad."""

    def q(self, t: np.ndarray) -> np.ndarray:
        q = np.zeros((len(t), 8))
        q[:, 2], q[:, 3], q[:, 7] = 1.0, 1.0, 0.5
        return q


@pytest.fixture(scope="module")
def knee():
    return load_chain(REPO / "configs" / "chains" / "knee.yaml")


def _record(chain, wobble: SensorWobbleSettings | None, mount_deg: float = 0.0,
            seconds: float = 60.0):
    settings = SimSettings(placement_jitter_m=0.0, wobble=wobble,
                           mount_rotation_max_rad=np.radians(mount_deg))
    sim = ImuSimulator(chain, 100.0, seed=5, noise=ImuNoise.none(), settings=settings,
                       duration_s=seconds, motion=StillKnee())
    return sim.next_block(int(seconds * 100))


def _segment_rates(rec) -> np.ndarray:
    """Each sensor's angular rate in its segment's frame (T, m, 3), rad/s."""
    mount = np.broadcast_to(rec.imu_rotations, rec.gyr.shape[:-1] + (4,))
    g = np.concatenate([np.zeros(rec.gyr.shape[:-1] + (1,)), rec.gyr], axis=-1)
    return np_qmul(np_qmul(mount, g), np_qconj(mount))[..., 1:]


@pytest.mark.parametrize("mount_deg", [0.0, 120.0])
def test_a_still_leg_shows_the_wobble_mostly_about_the_segments_long_axis(knee,
                                                                         mount_deg) -> None:
    """Still leg, 0.6 rad/s long axis and 0.3 across: in each segment's frame the sensors turn
    at about those rms rates (z is both segments' long axis), spread over 0.3-20 Hz, with the
    same share of rate below and above 3 Hz within a factor of three; the truth and the
    sensors' positions stay as they were and gravity keeps its size. With sensors mounted far
    from the segment frame the turn stays about the segment's axes."""
    rec = _record(knee, SensorWobbleSettings(0.6, 0.3), mount_deg)
    still = _record(knee, None, mount_deg)
    rates = _segment_rates(rec)
    rms = np.sqrt((rates ** 2).mean(axis=0))
    np.testing.assert_allclose(rms[:, 2], 0.6, rtol=0.35)
    np.testing.assert_allclose(rms[:, :2], 0.3, rtol=0.35)
    f, p = welch(rates[..., 2], fs=100.0, nperseg=2048, axis=0)
    low, high = p[(f >= 0.3) & (f < 3.0)].sum(axis=0), p[(f >= 3.0) & (f < 20.0)].sum(axis=0)
    assert ((low / high > 1 / 3) & (low / high < 3)).all(), low / high
    np.testing.assert_array_equal(rec.q_rel, still.q_rel)
    np.testing.assert_allclose(rec.imu_pos_world, still.imu_pos_world, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(rec.acc, axis=-1), 9.81, atol=1e-4)
    turned = np.degrees(np_qangle(rec.imu_q_world, still.imu_q_world))
    assert 1.0 < np.sqrt((turned ** 2).mean()) < 20.0 and turned.max() < 60.0


def test_without_wobble_or_at_zero_rates_the_signals_are_as_before(knee) -> None:
    still = _record(knee, None, seconds=2.0)
    zero = _record(knee, SensorWobbleSettings(0.0, 0.0), seconds=2.0)
    np.testing.assert_allclose(zero.acc, still.acc, atol=1e-6)
    np.testing.assert_allclose(zero.gyr, still.gyr, atol=1e-9)


def test_wobble_is_reproducible_by_seed_and_differs_between_seeds() -> None:
    pos, rot = np.array([[0.07, 0.0, -0.2], [0.3, 0.0, 0.0]]), np.tile([1.0, 0, 0, 0], (2, 1))
    t = np.linspace(0.0, 5.0, 501)
    s = SensorWobbleSettings()
    a = SensorWobble(pos, rot, s, [1, 2]).rotations(t)
    np.testing.assert_array_equal(a, SensorWobble(pos, rot, s, [1, 2]).rotations(t))
    assert not np.allclose(a, SensorWobble(pos, rot, s, [1, 3]).rotations(t))
    # the second site lies along x: its long axis is x, so its largest turn is about x
    rv = np.degrees(2.0 * np.arcsin(np.abs(a[..., 1:])))
    assert rv[:, 0].std(axis=0).argmax() == 2 and rv[:, 1].std(axis=0).argmax() == 0
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-12)
    identity = SensorWobble(pos, rot, SensorWobbleSettings(0.0, 0.0), 1).rotations(t)
    np.testing.assert_allclose(identity, np_qfrom_rotvec(np.zeros((501, 2, 3))), atol=1e-15)


@pytest.mark.parametrize("bad", [dict(band_hz=(0.0, 10.0)), dict(band_hz=(12.0, 5.0)),
                                 dict(long_axis_rate_rad_s=-1.0), dict(components=0)])
def test_bad_wobble_settings_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="sensor wobble"):
        replace(SensorWobbleSettings(), **bad)


def test_knee_wobble_draws_the_wobble_per_sequence_and_names_it_on_the_card() -> None:
    """60 % of knee-wobble's sequences wobble, with long-axis rates in 0.1-1.0 rad/s and half
    that across; knee-walk's never do; the card's recipe says so."""
    wobble, walk = get_problem("knee-wobble"), get_problem("knee-walk")
    drawn = [wobble.sim_settings(seed).wobble for seed in range(400)]
    on = [w for w in drawn if w is not None]
    assert 0.5 < len(on) / len(drawn) < 0.7
    rates = np.array([w.long_axis_rate_rad_s for w in on])
    assert rates.min() >= 0.1 and rates.max() <= 1.0
    np.testing.assert_allclose([w.across_rate_rad_s for w in on], 0.5 * rates)
    assert all(walk.sim_settings(seed).wobble is None for seed in range(50))
    card = wobble.describe()["sensor_wobble"]
    assert card["share"] == 0.6 and card["long_axis_rate_rad_s"] == [0.1, 1.0]
    assert "sensor_wobble" not in walk.describe()
