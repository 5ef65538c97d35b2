"""Rest and motion phases of a calibration recording, found from the gyroscopes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REST_GYR_RAD_S = 0.35    # rad/s, mean gyro norm (over all sensors) below which a window is rest
MOTION_GYR_RAD_S = 0.5   # rad/s, gyro norm of any sensor above which a sample is motion


@dataclass(frozen=True)
class Window:
    """A time window [start, stop) in samples at ``rate_hz``."""

    start: int
    stop: int

    def seconds(self, rate_hz: float) -> tuple[float, float]:
        """(t0, t1) in s from the first sample."""
        return self.start / rate_hz, self.stop / rate_hz

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def parse_window(text: str, rate_hz: float, n: int, what: str) -> Window:
    """A window from 'T0:T1' (s from the first sample); ValueError naming ``what`` if invalid."""
    try:
        t0, t1 = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected T0:T1 in seconds, e.g. 2.0:5.0") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"{what} {text!r}: times must be finite numbers of seconds")
    start, stop = round(t0 * rate_hz), round(t1 * rate_hz)
    if t0 < 0 or stop <= start or start >= n:
        raise ValueError(f"{what} {text!r}: need 0 <= T0 < T1 within the recording "
                         f"(0 to {n / rate_hz:.1f} s)")
    return Window(start, min(stop, n))


def host_window(window_ns: tuple[int, int], t0_ns: int, rate_hz: float, n: int,
                what: str) -> Window:
    """Samples of a grid starting at t0_ns (ns) inside a host-clock window (t_host ns)."""
    start = max(0, round((window_ns[0] - t0_ns) * 1e-9 * rate_hz))
    stop = min(n, round((window_ns[1] - t0_ns) * 1e-9 * rate_hz))
    if stop - start < 2:
        raise ValueError(f"{what}: the recording holds no data in that phase "
                         f"({(window_ns[0] - t0_ns) * 1e-9:.1f} to "
                         f"{(window_ns[1] - t0_ns) * 1e-9:.1f} s from its start)")
    return Window(start, stop)


def rest_candidates(gyr: np.ndarray, rate_hz: float, min_s: float = 0.5,
                    limit: int = 8) -> list[Window]:
    """Up to ``limit`` quietest non-overlapping windows of min_s s, quietest first.

    Only windows whose mean gyro norm is below REST_GYR_RAD_S count as rest, and none with a
    sample missing (NaN: a sensor's dropout).
    """
    n = len(gyr)
    w = max(2, round(min_s * rate_hz))
    if n < w:
        return []
    norm = np.linalg.norm(gyr, axis=-1).mean(axis=1)
    missing = np.concatenate([[0], np.cumsum(~np.isfinite(norm))])
    csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(norm))])
    mean = (csum[w:] - csum[:-w]) / w  # mean over [i, i + w)
    mean[missing[w:] - missing[:-w] > 0] = np.inf
    order = np.argsort(mean, kind="stable")
    taken: list[Window] = []
    for i in order:
        if mean[i] >= REST_GYR_RAD_S or len(taken) >= limit:
            break
        if all(i + w <= c.start or i >= c.stop for c in taken):
            taken.append(Window(int(i), int(i + w)))
    return taken


def motion_window(gyr: np.ndarray, rate_hz: float, exclude: Window | None = None) -> Window:
    """The span from the first to the last motion sample (outside ``exclude``)."""
    moving = np.linalg.norm(np.nan_to_num(gyr), axis=-1).max(axis=1) > MOTION_GYR_RAD_S
    if exclude is not None:
        moving[exclude.slice] = False
    idx = np.flatnonzero(moving)
    if len(idx) == 0:
        return Window(0, 0)
    return Window(int(idx[0]), int(idx[-1]) + 1)
