"""Orientation error metrics that do not depend on heading (for 6D estimates without magnetometer)."""

from __future__ import annotations

import numpy as np


def vertical_in_sensor(q: np.ndarray) -> np.ndarray:
    """Earth z axis in sensor coordinates, (n, 3), for q (n, 4) w,x,y,z sensor to earth."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    # third row of the rotation matrix R(q): R^T e_z
    return np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1)


def inclination_error(q_true: np.ndarray, q_est: np.ndarray) -> np.ndarray:
    """Inclination error, rad, (n,): angle between the true and estimated vertical axis
    as seen from the sensor; q_true and q_est (n, 4) w,x,y,z sensor to earth (z up).

    Independent of heading and of a heading offset between the two earth frames, like
    the inclination error of the BROAD benchmark (Laidig et al., Data 2021).
    """
    a, b = vertical_in_sensor(q_true), vertical_in_sensor(q_est)
    cos = np.einsum("...i,...i->...", a, b) / (
        np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.arccos(np.clip(cos, -1.0, 1.0))
