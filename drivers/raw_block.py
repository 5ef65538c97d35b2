"""Decoded `ImuSample`s -> one ``imu.raw`` block (RAW_IMU_DTYPE) with host receive times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drivers.imu_sample import ImuSample
from pipeline.runtime.streams import RAW_IMU_DTYPE


def raw_block(samples: Sequence[ImuSample], t_host_ns: np.ndarray) -> np.ndarray:
    """Pack samples into (n,) RAW_IMU_DTYPE: acc m/s^2, gyr rad/s, mag as decoded (NaN if absent).

    Args:
        samples: decoded samples, sensor frame.
        t_host_ns: (n,) int64, host monotonic receive time of each sample, ns.
    """
    n = len(samples)
    out = np.empty(n, RAW_IMU_DTYPE)
    out["t_sensor"] = [s.t_sensor_ns for s in samples]
    out["counter"] = [s.counter for s in samples]
    out["t_host"] = t_host_ns
    out["acc"] = [s.acc for s in samples]
    out["gyr"] = [s.gyr for s in samples]
    out["mag"] = [s.mag if s.mag is not None else (np.nan, np.nan, np.nan) for s in samples]
    return out


def backdated_t_host(t_read_ns: int, t_sensor_ns: np.ndarray, period_ns: float) -> np.ndarray:
    """Host time of each sample of one read, (n,) int64 ns: the last sample at ``t_read_ns``.

    Earlier samples are back-dated by their device-clock distance to the last one
    when the device clock is present and increasing within the read (better
    information), else by the nominal sample period ``period_ns``.
    """
    n = len(t_sensor_ns)
    ts = np.asarray(t_sensor_ns, dtype=np.int64)
    if n > 1 and ts.min() >= 0 and np.all(np.diff(ts) > 0):
        back = ts[-1] - ts
    else:
        back = ((n - 1 - np.arange(n)) * period_ns).astype(np.int64)
    return np.int64(t_read_ns) - back
