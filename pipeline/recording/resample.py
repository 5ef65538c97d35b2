"""One sensor's recorded ``imu.raw`` samples linearly interpolated onto another time grid."""

from __future__ import annotations

import numpy as np


def raw_on_grid(raw: np.ndarray, t_grid_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """acc (T, 3) m/s^2 and gyr (T, 3) rad/s (float64, sensor frame) at ``t_grid_ns`` (T,).

    ``raw`` holds ``imu.raw`` samples (``RAW_IMU_DTYPE``); they are ordered by their host
    time ``t_host`` (ns) first. Outside the samples' span the first or last value is held.
    """
    order = np.argsort(raw["t_host"], kind="stable")
    t = raw["t_host"][order].astype(np.float64)
    grid = np.asarray(t_grid_ns, dtype=np.float64)
    out = []
    for name in ("acc", "gyr"):
        v = raw[name][order].astype(np.float64)
        out.append(np.stack([np.interp(grid, t, v[:, k]) for k in range(3)], axis=1))
    return out[0], out[1]
