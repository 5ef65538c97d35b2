"""Peak decimation of rolling-plot data to the pixels a plot has, and a y range that sits still.

Drawing more points than a plot is wide costs time and shows nothing more; a y range that
follows every sample makes the axis re-lay its tick labels on every refresh. Both helpers
are plain numpy and run in the Qt thread before ``setData``.
"""

from __future__ import annotations

import math

import numpy as np


def peak_decimate(x: np.ndarray, y: np.ndarray, x0: float, x1: float,
                  pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``y`` per pixel column of ``[x0, x1]``: (x, y) of at most 2 * pixels points.

    ``x`` (k,) float64 ascending (s), ``y`` (k,) or (k, m) float (any unit; NaN kept as gaps
    only where a whole column is NaN). Returns the input when it already fits, else two
    points per non-empty column (its min then its max, at the column's first x) so peaks
    and the envelope stay visible.
    """
    pixels = max(int(pixels), 1)
    if len(x) <= 2 * pixels or x1 <= x0:
        return x, y
    col = np.clip(((x - x0) * (pixels / (x1 - x0))).astype(np.int64), 0, pixels - 1)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    lo = np.fmin.reduceat(y, starts, axis=0)  # fmin/fmax: NaN only where all are NaN
    hi = np.fmax.reduceat(y, starts, axis=0)
    xs = np.repeat(x[starts], 2)
    ys = np.empty((2 * len(starts),) + y.shape[1:], y.dtype)
    ys[0::2], ys[1::2] = lo, hi
    return xs, ys


def _nice_step(span: float) -> float:
    """A 1-2-5 step of about a fifth of ``span``."""
    raw = span / 5.0
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * mag:
            return m * mag
    return 10.0 * mag


def tick_values(lo: float, hi: float) -> np.ndarray:
    """Tick positions on a 1-2-5 step of about a fifth of ``[lo, hi]`` (both ends included)."""
    step = _nice_step(max(hi - lo, 1e-9) * 1.0)
    first = math.ceil(lo / step - 1e-9) * step
    return np.round(np.arange(first, hi + step * 1e-6, step), 10)


class StickyRange:
    """A y range that grows at once to fit the data and shrinks only when the data got small.

    Ends are rounded out to a 1-2-5 step, so the range, and with it the axis ticks, changes a
    few times a minute rather than on every refresh.
    """

    def __init__(self, min_span: float, shrink_below: float = 0.35) -> None:
        self.min_span, self.shrink_below = float(min_span), float(shrink_below)
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, lo: float, hi: float) -> tuple[float, float] | None:
        """Feed the data's min and max; the new (lo, hi) when the range must change, else None."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        if self.lo is not None and self.lo <= lo and hi <= self.hi:
            span = max(hi - lo, self.min_span * 0.5)
            if span >= self.shrink_below * (self.hi - self.lo):
                return None
        mid, span = (lo + hi) / 2.0, max(hi - lo, self.min_span)
        step = _nice_step(span * 1.2)
        new_lo = math.floor((mid - span * 0.6) / step) * step
        new_hi = math.ceil((mid + span * 0.6) / step) * step
        if (new_lo, new_hi) == (self.lo, self.hi):
            return None
        self.lo, self.hi = new_lo, new_hi
        return new_lo, new_hi
