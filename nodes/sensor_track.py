"""One sensor's samples on host time, for the sync node: clock mapping, validity, resampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.clock_mapper import ClockMapper
from pipeline.streams import FrameFlag

G0 = 9.80665  # m/s^2, standard gravity
_OK, _MISSING, _INVALID, _INTERPOLATED = (np.uint8(f) for f in (
    FrameFlag.OK, FrameFlag.MISSING, FrameFlag.INVALID, FrameFlag.INTERPOLATED))


@dataclass(frozen=True)
class Limits:
    """Physical range of valid samples: ``acc_max`` m/s^2 and ``gyr_max`` rad/s (vector norms)."""

    acc_max: float = 16 * G0
    gyr_max: float = 35.0


class SensorTrack:
    """Buffered samples of one sensor with host-time stamps (int64 ns) and a validity mask.

    Args:
        name: sensor (IMU site) name.
        max_gap_ns: longest interval without samples that is still interpolated, ns.
        dejitter: map the sensor clock with a :class:`ClockMapper`; else use ``t_host`` as is.
        limits: samples outside these ranges or non-finite are INVALID.
        clock_window_s: window of the clock fit, s.
    """

    def __init__(self, name: str, *, max_gap_ns: int, dejitter: bool, limits: Limits,
                 clock_window_s: float = 30.0) -> None:
        self.name = name
        self.max_gap_ns = max_gap_ns
        self.limits = limits
        self.mapper = ClockMapper(window_s=clock_window_s) if dejitter else None
        self.period_ns = 0  # nominal sample period from the stream info, 0 if unknown
        self.t = np.empty(0, np.int64)  # host-time stamps, non-decreasing
        self.acc = np.empty((0, 3), np.float64)  # m/s^2, sensor frame
        self.gyr = np.empty((0, 3), np.float64)  # rad/s, sensor frame
        self.valid = np.empty(0, bool)
        self.last_arrival_ns: int | None = None  # wall clock (monotonic) of the last block
        self.samples = 0
        self.invalid_samples = 0
        self._next_index = 0  # sample index, for sensors without a clock

    @property
    def last_t(self) -> int | None:
        """Host time (ns) of the newest sample, None before the first."""
        return int(self.t[-1]) if len(self.t) else None

    def add(self, raw: np.ndarray, rate_hz: float, now_ns: int) -> None:
        """Append a block of ``imu.raw`` samples (RAW_IMU_DTYPE) received at wall time ``now_ns``."""
        if rate_hz > 0:
            self.period_ns = round(1e9 / rate_hz)
        t_host = raw["t_host"].astype(np.int64)
        t_sensor = self._sensor_times(raw)
        if self.mapper is not None and t_sensor is not None:
            t = self.mapper.update(t_sensor, t_host)
        else:
            t = t_host
        floor = self.t[-1] if len(self.t) else np.iinfo(np.int64).min
        t = np.maximum.accumulate(np.maximum(t, floor))  # monotonize across clock refits
        acc = raw["acc"].astype(np.float64)
        gyr = raw["gyr"].astype(np.float64)
        with np.errstate(invalid="ignore"):
            valid = (np.isfinite(acc).all(axis=1) & np.isfinite(gyr).all(axis=1)
                     & (np.linalg.norm(acc, axis=1) <= self.limits.acc_max)
                     & (np.linalg.norm(gyr, axis=1) <= self.limits.gyr_max))
        self.t = np.concatenate([self.t, t])
        self.acc = np.concatenate([self.acc, acc])
        self.gyr = np.concatenate([self.gyr, gyr])
        self.valid = np.concatenate([self.valid, valid])
        self.last_arrival_ns = now_ns
        self.samples += len(raw)
        self.invalid_samples += int((~valid).sum())

    def _sensor_times(self, raw: np.ndarray) -> np.ndarray | None:
        """Device times (ns); from the sample count and nominal rate if the device has no clock."""
        ts = raw["t_sensor"].astype(np.int64)
        n = len(ts)
        if n and (ts >= 0).all():
            return ts
        if self.period_ns <= 0:
            return None  # nothing to dejitter against: use t_host
        counter = raw["counter"].astype(np.int64)
        idx = counter if n and (counter >= 0).all() else np.arange(n) + self._next_index
        self._next_index = int(idx[-1]) + 1 if n else self._next_index
        return idx * self.period_ns

    def resample(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values at host times ``grid`` (int64 ns): acc (m, 3), gyr (m, 3), flags (m,) uint8.

        Linear interpolation between the samples around each grid time. Where the
        samples around it are further apart than ``max_gap_ns`` or there is none on
        one side: NaN and MISSING. Where one of them is invalid: NaN and INVALID.
        Across lost samples (spacing > 1.5 nominal periods, <= max_gap_ns): INTERPOLATED.
        """
        m = len(grid)
        acc = np.full((m, 3), np.nan)
        gyr = np.full((m, 3), np.nan)
        flags = np.full(m, _MISSING, np.uint8)
        n = len(self.t)
        if n == 0:
            return acc, gyr, flags
        j = np.searchsorted(self.t, grid, side="right") - 1  # last sample at or before grid
        has_prev = j >= 0
        jp = np.clip(j, 0, n - 1)
        jn = np.clip(j + 1, 0, n - 1)
        exact = has_prev & (self.t[jp] == grid)
        has_next = has_prev & (j + 1 < n)
        span = np.where(has_next, self.t[jn] - self.t[jp], 0)
        bridged = has_next & ~exact & (span <= self.max_gap_ns)
        ok = exact | bridged
        w = np.where(bridged, (grid - self.t[jp]) / np.maximum(span, 1), 0.0)[:, None]
        valid = self.valid[jp] & (exact | self.valid[jn])
        use = ok & valid
        acc[use] = (self.acc[jp] + w * (self.acc[jn] - self.acc[jp]))[use]
        gyr[use] = (self.gyr[jp] + w * (self.gyr[jn] - self.gyr[jp]))[use]
        flags[ok] = _OK
        flags[ok & ~valid] = _INVALID
        if self.period_ns > 0:
            lost = bridged & (span > 1.5 * self.period_ns)
            flags[lost] |= _INTERPOLATED
        return acc, gyr, flags

    def trim_before(self, t_ns: int) -> None:
        """Drop samples not needed for grid times >= ``t_ns`` (keeps the one before it)."""
        j = int(np.searchsorted(self.t, t_ns, side="right")) - 1
        if j > 0:
            self.t, self.acc, self.gyr, self.valid = (
                self.t[j:], self.acc[j:], self.gyr[j:], self.valid[j:])
