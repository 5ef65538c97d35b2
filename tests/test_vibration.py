"""High-frequency motion added to a trajectory: sizes in the band asked for, seen through the
chain's kinematics by both sensors, the smooth motion underneath kept, bad settings refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import ImuNoise, ImuSimulator, SimSettings
from pipeline.kinematics.vibration import Vibration, VibrationSettings

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"


class Still:
    """arm3 held still: root upright at 1 m, hinges at 0.3 and -0.4 rad."""

    def q(self, t: np.ndarray) -> np.ndarray:
        q = np.zeros((len(t), 9))
        q[:, 2], q[:, 3], q[:, 7], q[:, 8] = 1.0, 1.0, 0.3, -0.4
        return q


@pytest.fixture(scope="module")
def arm3():
    return load_chain(CHAINS / "arm3.yaml")


def _signals(chain, vibration: VibrationSettings | None, seconds: float = 20.0):
    sim = ImuSimulator(chain, 100.0, seed=3, noise=ImuNoise.none(), duration_s=seconds,
                       settings=SimSettings(placement_jitter_m=0.0, vibration=vibration),
                       motion=Still())
    return sim.next_block(int(seconds * 100))


def _band_rms(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """rms per channel of x (T, ...) between lo and hi Hz at 100 Hz."""
    f, p = welch(x, fs=100.0, nperseg=512, axis=0)
    return np.sqrt(p[(f >= lo) & (f < hi)].sum(axis=0) * (f[1] - f[0]))


def test_vibration_has_the_asked_size_in_its_band_on_both_sensors(arm3) -> None:
    """A still arm shaken at 6 m/s^2 and 0.5 rad/s rms, 3-15 Hz: the root's sensor reads about
    that in the band and next to nothing outside it; the end segment's sensor, moved through
    the hinges, reads it too; the joint angles move by about a degree (rms) around the still
    pose."""
    rec = _signals(arm3, VibrationSettings(acc_rms_ms2=6.0, gyr_rms_rad_s=0.5))
    acc_in, acc_out = _band_rms(rec.acc[:, 0], 2.5, 16.0), _band_rms(rec.acc[:, 0], 20.0, 50.0)
    gyr_in = _band_rms(rec.gyr[:, 0], 2.5, 16.0)
    # the root's translation alone gives 6 per axis; its rotation adds lever-arm accelerations
    assert (acc_in > 4.5).all() and (acc_in < 9.0).all(), acc_in
    assert (acc_out < 0.05).all(), acc_out
    np.testing.assert_allclose(gyr_in, 0.5, rtol=0.3)
    assert (_band_rms(rec.acc[:, 1], 2.5, 16.0) > 3.0).all()
    moved = rec.joint_angles - [0.3, -0.4]
    assert np.sqrt((moved ** 2).mean()) < np.radians(1.0) and np.abs(moved).max() < np.radians(3.0)


def test_no_vibration_leaves_the_recording_as_it_was(arm3) -> None:
    """Settings without vibration give the still arm's gravity only; a zero-size vibration
    gives the same signals (the sensor errors' random stream is not touched)."""
    still = _signals(arm3, None, 2.0)
    np.testing.assert_allclose(np.linalg.norm(still.acc, axis=-1), 9.81, atol=1e-6)
    zero = _signals(arm3, VibrationSettings(acc_rms_ms2=0.0, gyr_rms_rad_s=0.0), 2.0)
    np.testing.assert_allclose(zero.acc, still.acc, atol=1e-6)
    np.testing.assert_allclose(zero.gyr, still.gyr, atol=1e-9)


def test_vibration_is_reproducible_by_seed_and_differs_between_seeds(arm3) -> None:
    s = VibrationSettings()
    t = np.linspace(0.0, 2.0, 201)
    a, b = Vibration(Still(), arm3, s, [1, 2]).q(t), Vibration(Still(), arm3, s, [1, 2]).q(t)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, Vibration(Still(), arm3, s, [1, 3]).q(t))
    np.testing.assert_allclose(np.linalg.norm(a[:, 3:7], axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("bad", [dict(band_hz=(0.0, 10.0)), dict(band_hz=(12.0, 5.0)),
                                 dict(acc_rms_ms2=-1.0), dict(components=0)])
def test_bad_vibration_settings_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="vibration"):
        replace(VibrationSettings(), **bad)
