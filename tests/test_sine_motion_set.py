"""tools/sine_motion_set.py: a held-out set from sums of sines, a motion family training never saw."""

from __future__ import annotations

import numpy as np

from pipeline.kinematics.chain import load_chain
from tests.conftest import REPO
from tools.sine_motion_set import generate_sines


def test_sines_reach_where_keyframes_rarely_go_and_stay_in_the_limits() -> None:
    data = generate_sines("arm3-sparse", 2, 30.0, fast=False, progress=False)
    assert data.imu.shape == (2, 3000, 12) and data.q_rel.shape == (2, 3000, 3, 4)
    assert np.isfinite(data.imu).all() and data.settings["motion"].startswith("sums of sines")
    w, x, y, _ = np.moveaxis(data.q_rel[:, :, 0].astype(np.float64), -1, 0)
    tilt = np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1, 1)))  # root z from up
    assert 0.05 < np.mean(tilt > 90.0) < 0.6  # upside down part of the time
    chain = load_chain(REPO / data.chain)
    for i in (1, 2):  # hinges: the twist about their axis within the limits
        axis = np.asarray(chain.axes[i])
        q = data.q_rel[:, :, i].astype(np.float64)
        angle = 2 * np.arctan2(q[..., 1:] @ axis, q[..., 0])
        lo, hi = chain.limits[i]
        assert angle.min() >= lo - 1e-3 and angle.max() <= hi + 1e-3
        assert angle.max() - angle.min() > 2.0  # the range is used
    again = generate_sines("arm3-sparse", 2, 30.0, fast=False, progress=False)
    np.testing.assert_array_equal(again.imu, data.imu)
