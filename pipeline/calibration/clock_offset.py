"""Time offset between the two sensors of a hinge, from their angular rates off its axis.

On a hinge the child segment turns as the parent does plus a turn about the axis: in the
sensors' frames ``w2 = R w1 + theta' j2``. Off the axis both see the same rotation, so
``|w1 x j1|`` (parent sensor) and ``|w2 x j2|`` (child sensor) are one signal, whatever the
mounting and the hinge angle, and line up at zero lag when the two clocks agree. The lag
of their cross-correlation's peak is how far the child's samples are stamped early against
the parent's. It needs motion off the axis (the thigh swinging while walking, not a knee
flexed under a still thigh): without it the correlation stays low and nothing is measured.

Units: rates rad/s, axes unit vectors in the sensor frames, times s.
"""

from __future__ import annotations

import math

import numpy as np

MAX_LAG_S = 0.5          # s, the lags searched either way
MIN_CORRELATION = 0.3    # peak correlation below this: no offset measured (NaN)
MIN_OFF_AXIS_RAD_S = 0.2  # rad/s, std of the parent's off-axis rate needed to measure


def off_axis_rate(gyr: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(T,) norm of the angular rate (T, 3) rad/s perpendicular to the unit ``axis``."""
    return np.linalg.norm(np.cross(gyr, axis), axis=1)


def clock_offset(gyr_parent: np.ndarray, gyr_child: np.ndarray, axis_parent: np.ndarray,
                 axis_child: np.ndarray, rate_hz: float,
                 max_lag_s: float = MAX_LAG_S) -> tuple[float, float]:
    """(offset s, peak correlation): the child's samples show what the parent's show
    ``offset`` s later, i.e. its stamps are ``offset`` s early (add it to its times to line
    them up). Offset NaN when the peak correlation is under MIN_CORRELATION, the parent's
    off-axis rate too small, or the peak at the edge of the search. Both (T, 3) on one grid
    at ``rate_hz``; non-finite samples count as their signal's mean."""
    x = off_axis_rate(np.asarray(gyr_parent, dtype=np.float64), axis_parent)
    y = off_axis_rate(np.asarray(gyr_child, dtype=np.float64), axis_child)
    x, y = (_centred(v) for v in (x, y))
    lag = round(max_lag_s * rate_hz)
    if len(x) <= 4 * lag or np.std(x) < MIN_OFF_AXIS_RAD_S:
        return math.nan, 0.0
    core = y[lag:len(y) - lag]
    corr = np.array([x[lag + k:len(x) - lag + k] @ core for k in range(-lag, lag + 1)])
    corr /= math.sqrt(float(x @ x) * float(y @ y)) or 1.0
    i = int(np.argmax(corr))
    if corr[i] < MIN_CORRELATION or i in (0, len(corr) - 1):
        return math.nan, float(corr[i])
    a, b, c = corr[i - 1], corr[i], corr[i + 1]
    step = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0  # parabola's top
    return (i - lag + step) / rate_hz, float(b)


def _centred(v: np.ndarray) -> np.ndarray:
    v = np.where(np.isfinite(v), v, np.nanmean(v))
    return v - v.mean()
