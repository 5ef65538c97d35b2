"""IMU signals of a recorded session on one time grid, as the calibration needs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.recording.session_reader import read_streams
from pipeline.runtime.streams import RAW_IMU


def imu_from_session(path: str | Path, imus: tuple[str, ...], rate_hz: float
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """acc (m/s^2) and gyr (rad/s) per IMU, sensor frames, linearly resampled at rate_hz Hz.

    The grid spans the time all ``imus`` overlap (their ``imu.raw`` streams' t_host, the
    stream source being the IMU name). ValueError names the file and the missing sensors.
    """
    path = Path(path)
    raw = {s.info.source: s.data for s in read_streams(path).values() if s.info.kind == RAW_IMU}
    missing = [m for m in imus if m not in raw]
    if missing:
        raise ValueError(f"{path}: no '{RAW_IMU}' stream for IMU(s) {missing}; the session has "
                         f"{sorted(raw)} (rename them with `imuflow import ... --name OLD=NEW`)")
    times = {m: raw[m]["t_host"].astype(np.float64) * 1e-9 for m in imus}
    t0 = max(t.min() for t in times.values())
    t1 = min(t.max() for t in times.values())
    if t1 <= t0:
        raise ValueError(f"{path}: the sensors {list(imus)} do not overlap in time")
    grid = t0 + np.arange(int((t1 - t0) * rate_hz) + 1) / rate_hz
    acc, gyr = {}, {}
    for m in imus:
        order = np.argsort(times[m], kind="stable")
        t = times[m][order]
        for out, name in ((acc, "acc"), (gyr, "gyr")):
            v = raw[m][name][order].astype(np.float64)
            out[m] = np.stack([np.interp(grid, t, v[:, k]) for k in range(3)], axis=1)
    return acc, gyr
