"""Per-joint angle errors: wrapping, hinge/rotation/inclination errors, heading-free part, stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.evaluation.joint_errors import (
    error_stats,
    format_table,
    heading_free,
    hinge_error_deg,
    inclination_error_deg,
    rotation_error_deg,
    sincos_to_angle,
    truth_known,
    wrap_deg,
)
from pipeline.kinematics.quaternion import np_qfrom_axis_angle, np_qfrom_rotvec, np_qmul


def test_wrap_deg_range_and_values() -> None:
    x = np.array([-540.0, -180.0, -179.0, 0.0, 179.0, 180.0, 181.0, 359.0, 720.0])
    w = wrap_deg(x)
    assert np.all(w >= -180.0) and np.all(w < 180.0)
    assert np.allclose(w, [-180, -180, -179, 0, 179, -180, -179, -1, 0])


def test_hinge_error_wraps_across_pi() -> None:
    est = np.radians([179.0, -179.0, 10.0])
    true = np.radians([-179.0, 179.0, 10.0])
    assert np.allclose(hinge_error_deg(est, true), [-2.0, 2.0, 0.0])


def test_sincos_to_angle_ignores_scale() -> None:
    a = np.array([-3.0, -1.0, 0.0, 2.0, 3.1])
    assert np.allclose(sincos_to_angle(np.stack([3 * np.sin(a), 3 * np.cos(a)], -1)), a)


def test_rotation_error_is_sign_free_angle() -> None:
    q = np_qfrom_axis_angle(np.array([0.0, 1.0, 0.0]), np.radians([0.0, 30.0, 170.0]))
    ident = np.array([1.0, 0.0, 0.0, 0.0])
    assert np.allclose(rotation_error_deg(q, ident), [0.0, 30.0, 170.0])
    assert np.allclose(rotation_error_deg(-q * 2.0, ident), [0.0, 30.0, 170.0], atol=1e-6)


rotvecs = st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3)


@settings(max_examples=50, deadline=None)
@given(r=rotvecs, yaw=st.floats(-math.pi, math.pi))
def test_inclination_error_ignores_heading(r: list[float], yaw: float) -> None:
    q = np_qfrom_rotvec(np.array(r))
    q_yawed = np_qmul(np_qfrom_axis_angle(np.array([0.0, 0.0, 1.0]), np.float64(yaw)), q)
    assert inclination_error_deg(q_yawed, q) == pytest.approx(0.0, abs=1e-5)
    # heading-free part: same inclination, no rotation component about earth z
    s = heading_free(q_yawed)
    assert inclination_error_deg(s, q) == pytest.approx(0.0, abs=1e-5)
    assert abs(s[3]) < 1e-12 and s[0] >= 0
    assert np.allclose(heading_free(q), s, atol=1e-9)


def test_inclination_error_of_a_tilt() -> None:
    tilt = np_qfrom_axis_angle(np.array([1.0, 0.0, 0.0]), np.radians(25.0))
    assert inclination_error_deg(tilt, np.array([1.0, 0, 0, 0])) == pytest.approx(25.0)


def test_error_stats_values() -> None:
    e = np.concatenate([np.arange(101.0), -np.arange(101.0)])  # |e| = 0..100 twice
    s = error_stats(e)
    assert s.mean_deg == pytest.approx(50.0)
    assert s.p50_deg == pytest.approx(50.0)
    assert s.p90_deg == pytest.approx(90.0)
    assert s.p99_deg == pytest.approx(99.0)
    assert s.max_deg == 100.0
    assert s.rmse_deg == pytest.approx(math.sqrt(np.mean(np.arange(101.0) ** 2)))
    assert s.n == 202
    assert set(s.as_dict()) == {"mean_deg", "rmse_deg", "p50_deg", "p90_deg", "p95_deg",
                                "p99_deg", "max_deg"}


def test_error_stats_refuses_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        error_stats(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="non-finite"):
        error_stats(np.array([1.0, np.nan]))


def test_error_stats_leave_out_samples_without_ground_truth() -> None:
    e = np.array([[1.0, np.nan, 3.0], [5.0, 7.0, np.nan]])
    known = np.array([[True, False, True], [True, True, False]])
    s = error_stats(e, known)
    assert (s.mean_deg, s.max_deg, s.n, s.unscored) == (4.0, 7.0, 4, 2)
    with pytest.raises(ValueError, match="where the ground truth is known: the estimate"):
        error_stats(e, np.ones_like(known))
    with pytest.raises(ValueError, match="the ground truth missing throughout"):
        error_stats(e, np.zeros_like(known))
    q = np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]])
    assert truth_known(q).tolist() == [True, False]


def test_format_table_has_a_row_per_joint() -> None:
    t = format_table({"seg2": error_stats([1.0, 2.0]), "seg3": error_stats([3.0])}, "title")
    lines = t.splitlines()
    assert lines[0] == "title"
    assert lines[-2].startswith("seg2") and lines[-1].startswith("seg3")
    assert "p99" in lines[1] and "3.00" in lines[-1]
