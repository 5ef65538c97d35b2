"""Rest and motion phases of a calibration recording, found from the gyroscopes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REST_GYR_RAD_S = 0.35    # rad/s, mean gyro norm (over all sensors) below which a window is rest
MOTION_GYR_RAD_S = 0.5   # rad/s, gyro norm of any sensor above which a sample is motion
SAME_POSE_DEG = 5.0      # deg: still windows whose gravity directions all agree this well
# stiller than a body holds (a person's stillest second: gyro 1-2 deg/s, acc 0.05-0.12 m/s^2
# std on knee_tracking1; the simulator's sensor noise alone 0.7 deg/s, 0.05 m/s^2): every
# sensor under both for OFF_BODY_S or more lies on a table, not on the person
OFF_BODY_GYR_STD_RAD_S = math.radians(0.5)
OFF_BODY_ACC_STD_MS2 = 0.04
OFF_BODY_S = 2.0


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


def rest_candidates(gyr: np.ndarray, rate_hz: float, min_s: float = 0.5, limit: int = 8,
                    acc: np.ndarray | None = None) -> list[Window]:
    """Up to ``limit`` quiet non-overlapping windows of min_s s, quietest first.

    ``gyr`` (T, n_imu, 3) rad/s. Only windows whose mean gyro norm is below REST_GYR_RAD_S
    count as rest, and none with a sample missing (NaN: a sensor's dropout). Each rest period
    (quiet windows one after another) gives its quietest window first, so that a long still
    phase (seated before the procedure) cannot crowd out a short one (the neutral pose); the
    slots left are filled with further windows, quietest first. With ``acc`` (T, n_imu, 3)
    m/s^2, a window in the same pose as one taken (every sensor's mean acceleration within
    SAME_POSE_DEG of its direction there) is left out: it would calibrate alike.
    """
    n = len(gyr)
    w = max(2, round(min_s * rate_hz))
    if n < w:
        return []
    mean = _rest_means(gyr, w)
    quiet = np.flatnonzero(mean < REST_GYR_RAD_S)
    if not len(quiet):
        return []
    poses = None if acc is None else _window_means(acc, w)
    periods = np.split(quiet, np.flatnonzero(np.diff(quiet) > 1) + 1)
    firsts = sorted((int(p[np.argmin(mean[p])]) for p in periods), key=lambda i: mean[i])
    taken: list[int] = []
    for i in firsts + [int(i) for i in quiet[np.argsort(mean[quiet], kind="stable")]]:
        if len(taken) >= limit:
            break
        if any(i < j + w and j < i + w for j in taken):
            continue
        if poses is not None and any(_same_pose(poses[i], poses[j]) for j in taken):
            continue
        taken.append(i)
    return [Window(i, i + w) for i in sorted(taken, key=lambda i: mean[i])]


def off_body(acc: np.ndarray, gyr: np.ndarray, rate_hz: float) -> np.ndarray:
    """(T,) True in stretches of OFF_BODY_S or more in which every sensor's acc (T, n_imu, 3)
    m/s^2 and gyr rad/s vary less than a body held still makes them (std per axis under
    OFF_BODY_ACC_STD_MS2 and OFF_BODY_GYR_STD_RAD_S): sensors lying on a table before they
    are strapped on or after they are taken off."""
    n, w = len(gyr), max(2, round(OFF_BODY_S * rate_hz))
    if n < w:
        return np.zeros(n, dtype=bool)
    dead = np.ones(n - w + 1, dtype=bool)
    for x, limit in ((gyr, OFF_BODY_GYR_STD_RAD_S), (acc, OFF_BODY_ACC_STD_MS2)):
        with np.errstate(invalid="ignore"):  # inf - inf = NaN: a gap, never dead
            var = _window_means(x * x, w) - _window_means(x, w) ** 2
            dead &= np.all(var < limit ** 2, axis=(1, 2))
    return _in_any(dead, n, w)


def at_rest(gyr: np.ndarray, rate_hz: float, min_s: float = 0.5) -> np.ndarray:
    """(T,) True for the samples of every window of min_s s that ``rest_candidates`` would
    count as rest (mean gyro norm over the sensors below REST_GYR_RAD_S; gyr (T, n_imu, 3)
    rad/s): the recording's still poses."""
    n, w = len(gyr), max(2, round(min_s * rate_hz))
    if n < w:
        return np.zeros(n, dtype=bool)
    return _in_any(_rest_means(gyr, w) < REST_GYR_RAD_S, n, w)


def _rest_means(gyr: np.ndarray, w: int) -> np.ndarray:
    """Mean gyro norm (rad/s) over the sensors and over [i, i + w) for every i."""
    return _window_means(np.linalg.norm(gyr, axis=-1).mean(axis=1), w)


def _in_any(starts_ok: np.ndarray, n: int, w: int) -> np.ndarray:
    """(n,) True for sample j when a window [i, i + w) with ``starts_ok[i]`` holds it."""
    starts = np.concatenate([[0], np.cumsum(starts_ok)])
    j = np.arange(n)
    return starts[np.minimum(j + 1, len(starts_ok))] - starts[np.maximum(j - w + 1, 0)] > 0


def _window_means(x: np.ndarray, w: int) -> np.ndarray:
    """Means of ``x`` over [i, i + w) along axis 0 for every i; inf where a sample is NaN."""
    finite = np.isfinite(x)
    zeros = np.zeros((1,) + x.shape[1:])
    missing = np.concatenate([zeros, np.cumsum(~finite, axis=0)])
    csum = np.concatenate([zeros, np.cumsum(np.where(finite, x, 0.0), axis=0)])
    mean = (csum[w:] - csum[:-w]) / w
    mean[missing[w:] - missing[:-w] > 0] = np.inf
    return mean


def _same_pose(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (n_imu, 3) mean accelerations point the same way for every sensor."""
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return bool(np.all(cos > math.cos(math.radians(SAME_POSE_DEG))))


def motion_window(gyr: np.ndarray, rate_hz: float, exclude: Window | None = None) -> Window:
    """The span from the first to the last motion sample (outside ``exclude``)."""
    moving = np.linalg.norm(np.nan_to_num(gyr), axis=-1).max(axis=1) > MOTION_GYR_RAD_S
    if exclude is not None:
        moving[exclude.slice] = False
    idx = np.flatnonzero(moving)
    if len(idx) == 0:
        return Window(0, 0)
    return Window(int(idx[0]), int(idx[-1]) + 1)
