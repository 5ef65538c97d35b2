"""The stress held-out set: generator settings training never uses, from a disjoint seed range."""

from __future__ import annotations

import numpy as np

from pipeline.kinematics.quaternion import np_qrotate
from tools.training.data import SEEDS, generate
from tools.training.problem import get_problem


def _max_inclination_deg(q_root: np.ndarray) -> float:
    up = np_qrotate(q_root.astype(np.float64), np.array([0.0, 0.0, 1.0]))
    return float(np.degrees(np.arccos(np.clip(up[..., 2], -1, 1))).max())


def test_stress_set_goes_where_training_never_goes() -> None:
    problem = get_problem("arm3-sparse")
    seeds = np.arange(SEEDS["stress"], SEEDS["stress"] + 3)
    stress = generate(problem, seeds, 30.0, progress=False, stress=True)
    usual = generate(problem, np.arange(SEEDS["train"], SEEDS["train"] + 3), 30.0,
                     progress=False)
    assert _max_inclination_deg(usual.q_rel[:, :, 0]) < 90.0
    assert _max_inclination_deg(stress.q_rel[:, :, 0]) > 120.0  # lying, upside down
    assert "whole sphere" in stress.settings["stress"]
    assert SEEDS["stress"] > SEEDS["heldout"] + 100_000  # no overlap with the held-out seeds
    gyr = stress.imu.reshape(3, -1, 2, 6)[..., 3:]
    assert np.abs(gyr).max() < np.radians(2000)  # within the simulated sensor's range
