"""One sensor's recorded ``imu.raw`` samples linearly interpolated onto another time grid."""

from __future__ import annotations

import numpy as np


def raw_on_grid(raw: np.ndarray, t_grid_ns: np.ndarray,
                max_gap_ns: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """acc (T, 3) m/s^2 and gyr (T, 3) rad/s (float64, sensor frame) at ``t_grid_ns`` (T,).

    ``raw`` holds ``imu.raw`` samples (``RAW_IMU_DTYPE``); they are ordered by their host
    time ``t_host`` (ns) first. Outside the samples' span the first or last value is held.
    Grid times inside a gap of more than ``max_gap_ns`` between two samples (a sensor that
    dropped out) are NaN, not bridged by a straight line, as the sync node marks them live.
    """
    order = np.argsort(raw["t_host"], kind="stable")
    t = raw["t_host"][order].astype(np.float64)
    grid = np.asarray(t_grid_ns, dtype=np.float64)
    out = []
    for name in ("acc", "gyr"):
        v = raw[name][order].astype(np.float64)
        out.append(np.stack([np.interp(grid, t, v[:, k]) for k in range(3)], axis=1))
    if np.isfinite(max_gap_ns) and len(t) > 1:
        after = np.clip(np.searchsorted(t, grid, side="right"), 1, len(t) - 1)
        gap = (grid > t[after - 1]) & (grid < t[after]) & (t[after] - t[after - 1] > max_gap_ns)
        for arr in out:
            arr[gap] = np.nan
    return out[0], out[1]
