"""Two sensors' clocks on one hinge, from their rates off its axis (calibration/clock_offset.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.calibration import calibrate
from pipeline.calibration.clock_offset import clock_offset
from pipeline.kinematics.calibration_motion import randomly_mounted, simulated_procedure
from pipeline.kinematics.chain import load_chain
from tools.training.data import generate
from tools.training.problem import get_problem

REPO = Path(__file__).resolve().parents[1]
RATE = 100.0
KNEE_AXIS = np.array([0.0, 1.0, 0.0])  # the knee's axis in both simulated sensor frames


def _late(gyr: np.ndarray, samples: int) -> np.ndarray:
    """``gyr`` (T, 3) stamped ``samples`` early: at t it shows what happens at t + samples."""
    return np.roll(gyr, -samples, axis=0)


@pytest.mark.parametrize("seed", [7_100_000, 7_100_001, 7_100_006])
def test_a_shifted_child_sensor_is_measured(seed: int) -> None:
    """Simulated walks (knee-walk): aligned clocks read within 25 ms of zero (measured: 0.5,
    2.1, 4.3 ms; the worst of 8 sequences 19 ms, from the sensors' residual mounting errors);
    a shift of the shank's data moves the reading by the shift, to 10 ms."""
    data = generate(get_problem("knee-walk"), [seed], 30.0, progress=False)
    gyr = data.imu[0].reshape(-1, 2, 6)[:, :, 3:].astype(np.float64)
    thigh, shank = gyr[:, 0], gyr[:, 1]
    inner = slice(60, -60)  # past the roll's wrap

    def offset(samples: int) -> float:
        value, corr = clock_offset(thigh[inner], _late(shank, samples)[inner], KNEE_AXIS,
                                   KNEE_AXIS, RATE)
        assert corr > 0.6
        return value

    zero = offset(0)
    assert abs(zero) < 0.025
    for samples in (7, -12):
        assert offset(samples) - zero == pytest.approx(samples / RATE, abs=0.01)


def test_no_motion_off_the_axis_measures_nothing() -> None:
    """A thigh that only turns about the knee's axis: nothing to line up, NaN."""
    t = np.arange(3000) / RATE
    thigh = np.zeros((len(t), 3))
    thigh[:, 1] = np.sin(2 * np.pi * 0.5 * t)
    shank = thigh * 2.0
    offset, _ = clock_offset(thigh, shank, KNEE_AXIS, KNEE_AXIS, RATE)
    assert np.isnan(offset)


def test_calibration_reports_clocks_apart_and_how_to_shift() -> None:
    """The simulated procedure of a randomly mounted knee: as recorded the calibration is good,
    the offset within 25 ms of zero; with the shank's data 80 ms early it stays good with a
    note, 150 ms early it is poor; both name the shift that lines the clocks up."""
    chain = randomly_mounted(load_chain(REPO / "configs/chains/knee.yaml"), 3)
    acc, gyr = simulated_procedure(chain, 3, RATE)

    def shank_early(samples: int):
        cut = {"thigh": slice(10, None), "shank": slice(10 + samples, None)}
        return calibrate(chain, {m: acc[m][cut[m]] for m in cut},
                         {m: gyr[m][cut[m]] for m in cut}, RATE)

    cal = shank_early(0)
    assert cal.ok and not cal.notes(), cal.problems() + cal.notes()
    assert abs(cal.sensors["shank"].quality["clock_offset_ms"]) < 25.0
    for samples, poor in ((8, False), (15, True)):
        cal = shank_early(samples)
        measured = cal.sensors["shank"].quality["clock_offset_ms"]
        assert measured == pytest.approx(samples * 10.0, abs=20.0)
        assert cal.ok is not poor
        (said,) = cal.problems() if poor else cal.notes()
        assert f"stamped {measured:.0f} ms early against thigh's" in said
        assert f"--shift shank=+{measured / 1e3:.3f}" in said
