"""The compiled VQF 6D filter and the compiled one-frame prior give the numbers they replace.

``Vqf6DBank`` (pipeline/estimation/vqf6d.py) must equal the vqf package's C++ filter, and the
one-frame path of a two-axis prior (pipeline/estimation/prior_frame.py) must equal the general
path frame by frame: a trained hybrid model's input may not move.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import vqf

from pipeline.estimation.constraint import finite_or_zero
from pipeline.estimation.constraint_prior import ConstraintPrior
from pipeline.estimation.vqf6d import BIAS, REST_DETECTED, Vqf6DBank
from pipeline.estimation.vqf_tuning import BODY_WORN, ROOT_BODY_WORN, VQF_PACKAGE_DEFAULTS
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import simulate
from pipeline.kinematics.quaternion import np_qrotate

REPO = Path(__file__).resolve().parents[1]
ARM3 = load_chain(REPO / "configs/chains/arm3.yaml")
ARM3_SPARSE_OUTPUTS = (("seg1", "up"), ("seg2", "sincos"), ("seg3", "sincos"))


@pytest.fixture(scope="module")
def motion() -> tuple[np.ndarray, np.ndarray]:
    """40 s of arm3 motion (acc m/s^2, gyr rad/s, float32, (T, 2, 3)) with a 6 s rest, a zero
    acc sample and non-finite values in both signals."""
    rec = simulate(ARM3, 40.0, 100.0, 5)
    acc, gyr = rec.acc.astype(np.float32), rec.gyr.astype(np.float32)
    acc[2000:2600], gyr[2000:2600] = (0.3, 0.1, 9.8), 0.02  # at rest with a gyro bias
    acc[150, 0] = 0.0
    acc[700, 1, 2], gyr[900, 0, 1], gyr[901, 1, 0] = np.nan, np.inf, -np.inf
    return acc, gyr


@pytest.mark.parametrize("tuning", [BODY_WORN, ROOT_BODY_WORN, VQF_PACKAGE_DEFAULTS])
def test_compiled_filter_equals_the_vqf_package(motion, tuning) -> None:
    acc, gyr = (finite_or_zero(v[:, 0]) for v in motion)
    ref = vqf.VQF(0.01, **tuning.kwargs()).updateBatch(gyr, acc)
    ours = Vqf6DBank([0], 100.0, tuning)
    ours.update(acc[:, None], gyr[:, None])
    np.testing.assert_allclose(ours.quat6d[0], ref["quat6D"], rtol=0, atol=1e-12)
    state = ours.states[0]
    np.testing.assert_allclose(state[BIAS:BIAS + 3], ref["bias"][-1], rtol=0, atol=1e-12)
    assert ref["restDetected"][2400] and state[REST_DETECTED] == 0.0  # rest seen, then ended


def test_blocks_of_any_size_give_the_same_orientation(motion) -> None:
    acc, gyr = motion
    whole = Vqf6DBank([1], 100.0, BODY_WORN)
    whole.update(acc, gyr)
    steps, one = Vqf6DBank([1], 100.0, BODY_WORN), []
    for i in range(len(gyr)):
        steps.update(acc[i:i + 1], gyr[i:i + 1])
        one.append(steps.quat6d[1])
    np.testing.assert_array_equal(np.concatenate(one), whole.quat6d[1])


def test_bank_zeroes_non_finite_vectors_and_keeps_what_each_filter_took(motion) -> None:
    acc, gyr = motion
    bank = Vqf6DBank([1, 0], 100.0, BODY_WORN)
    bank.update(acc, gyr)
    for sensor in (0, 1):
        g, a = finite_or_zero(gyr[:, sensor]), finite_or_zero(acc[:, sensor])
        np.testing.assert_array_equal(bank.inputs[sensor][0], g)
        np.testing.assert_array_equal(bank.inputs[sensor][1], a)
        ref = vqf.VQF(0.01, **BODY_WORN.kwargs()).updateBatch(g, a)["quat6D"]
        np.testing.assert_allclose(bank.quat6d[sensor], ref, rtol=0, atol=1e-12)
    assert not bank.inputs[1][1][700].any() and not bank.inputs[0][0][900].any()


@pytest.fixture(scope="module")
def gapped(motion) -> tuple[np.ndarray, np.ndarray]:
    """``motion`` with sensor gaps (NaN): seg3 for 0.3 s, seg1 for 0.5 s across an estimation
    instant of the heading, seg3 for 0.05 s (shorter than a restart needs)."""
    acc, gyr = (v.copy() for v in motion)
    for sensor, start, n in ((1, 1200, 30), (0, 3000, 50), (1, 3400, 5)):
        acc[start:start + n, sensor] = gyr[start:start + n, sensor] = np.nan
    return acc, gyr


def test_a_sensor_gap_restarts_the_filter_from_the_next_acceleration(gapped) -> None:
    acc, gyr = gapped
    bank = Vqf6DBank([1, 0], 100.0, BODY_WORN, restart_after=10)
    done = 0
    for sensor, end in ((1, 1230), (0, 3050)):  # the first finite frame after each gap
        bank.update(acc[done:end], gyr[done:end])
        assert not any(r.any() for r in bank.restarted.values())  # nor after 5 frames (3400)
        row = [1, 0].index(sensor)
        bias = bank.states[row, BIAS:BIAS + 3].copy()
        bank.update(acc[end:end + 1], gyr[end:end + 1])
        assert bank.restarted[sensor][0] and not bank.restarted[1 - sensor][0]
        # the inclination is this sample's: its acceleration points up
        up = np_qrotate(bank.quat6d[sensor][0], acc[end, sensor].astype(np.float64))
        assert np.degrees(np.arccos(up[2] / np.linalg.norm(up))) < 0.5
        # the gyro bias estimate is kept (measured: moved by at most 0.0011 rad/s in the
        # restarting step; biases here 0.001-0.02 rad/s, a fresh filter's is 0)
        np.testing.assert_allclose(bank.states[row, BIAS:BIAS + 3], bias, atol=3e-3)
        done = end + 1
    bank.update(acc[done:], gyr[done:])
    assert not any(r.any() for r in bank.restarted.values())
    never = Vqf6DBank([1, 0], 100.0, BODY_WORN)  # restart_after 0: as the vqf package
    never.update(acc, gyr)
    assert not any(r.any() for r in never.restarted.values())


@pytest.mark.parametrize("kind", ["constraint-body-vqf-root2s", "constraint-body-vqf"])
@pytest.mark.parametrize("outputs", [ARM3_SPARSE_OUTPUTS, ARM3_SPARSE_OUTPUTS[1:]],
                         ids=["root-up", "no-root"])
def test_one_frame_compiled_prior_equals_the_general_path(motion, kind, outputs) -> None:
    acc, gyr = motion
    compiled = ConstraintPrior(ARM3, ["seg1", "seg3"], 100.0, outputs, kind)
    general = ConstraintPrior(ARM3, ["seg1", "seg3"], 100.0, outputs, kind)
    general._one_frame = None  # every frame through the estimator, as a block of one
    events = 0
    for i in range(len(acc)):
        events += compiled._one_frame.heading.next_is_event()
        a, b = (p.features(acc[i:i + 1], gyr[i:i + 1]) for p in (compiled, general))
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")
    assert events > 10  # estimation instants too, in two compiled parts around the estimation


@pytest.mark.parametrize("kind", ["constraint-body-vqf-root2s", "constraint-body-vqf"])
def test_gaps_restart_both_paths_alike(gapped, kind) -> None:
    """Across sensor gaps (restarts of a filter and of the heading, one of them at an
    estimation instant) the compiled one-frame path and blocks give the same prior."""
    acc, gyr = gapped
    compiled = ConstraintPrior(ARM3, ["seg1", "seg3"], 100.0, ARM3_SPARSE_OUTPUTS, kind)
    blocks = ConstraintPrior(ARM3, ["seg1", "seg3"], 100.0, ARM3_SPARSE_OUTPUTS, kind)
    one = np.concatenate([compiled.features(acc[i:i + 1], gyr[i:i + 1]) for i in range(len(acc))])
    many = np.concatenate([blocks.features(acc[i:i + 37], gyr[i:i + 37])
                           for i in range(0, len(acc), 37)])
    np.testing.assert_array_equal(one, many)
    assert compiled._one_frame.heading.counts[0] < 1000  # started again at 3050


def test_chains_with_more_than_one_pair_take_the_general_path() -> None:
    knee = load_chain(REPO / "configs/chains/knee.yaml")
    prior = ConstraintPrior(knee, list(knee.imu_names), 100.0, (("shank", "sincos"),),
                            "constraint-joint-centre")
    assert prior._one_frame is None
