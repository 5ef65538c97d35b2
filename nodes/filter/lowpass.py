"""Streaming Butterworth low-pass over many channels, NaN-tolerant, state carried across blocks."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.signal import butter, sosfilt, sosfilt_zi

STEP_MAX_SAMPLES = 4  # blocks up to this long skip scipy's per-call overhead (same result)


class StreamingLowpass:
    """``scipy.signal.butter`` + ``sosfilt`` with its ``zi`` state kept between calls.

    Each channel starts in steady state at its first finite sample (no start-up
    transient). NaN samples leave the filter fed with the channel's last finite
    value and come out as NaN. Output does not depend on block sizes.

    Args:
        n_channels: number of independent channels (columns).
        cutoff_hz: -3 dB frequency, Hz (0 < cutoff < rate/2).
        rate_hz: sample rate, Hz.
        order: filter order.
    """

    def __init__(self, n_channels: int, *, cutoff_hz: float, rate_hz: float, order: int) -> None:
        if not 0 < cutoff_hz < rate_hz / 2 or order < 1:
            raise ValueError(f"low-pass: need 0 < cutoff_hz < rate_hz/2 and order >= 1; got "
                             f"cutoff_hz={cutoff_hz}, rate_hz={rate_hz}, order={order}")
        self.sos = butter(order, cutoff_hz, fs=rate_hz, output="sos")
        self._zi0 = sosfilt_zi(self.sos)  # (n_sections, 2), steady state for a unit input
        self._z = np.zeros((len(self.sos), 2, n_channels))
        self._started = np.zeros(n_channels, bool)
        self._last = np.zeros(n_channels)  # last finite input per channel
        self._all_started = n_channels == 0
        self._coef = np.ascontiguousarray(self.sos[:, [0, 1, 2, 4, 5]])  # a0 == 1 (butter's sos)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter (n, n_channels) float64 samples; returns the same shape, NaN where x is NaN."""
        n, c = x.shape
        finite = np.isfinite(x)
        if n <= STEP_MAX_SAMPLES and self._all_started and finite.all():
            return self._step(x)
        y = np.full((n, c), np.nan)
        new = ~self._started & finite.any(axis=0)
        for ch in np.flatnonzero(new):  # first finite sample: start that channel in steady state
            f = int(np.argmax(finite[:, ch]))
            self._z[:, :, ch] = self._zi0 * x[f, ch]
            self._last[ch] = x[f, ch]
            self._started[ch] = True
            held = self._held(x[f:, ch:ch + 1], finite[f:, ch:ch + 1], np.array([ch]))
            y[f:, ch], self._z[:, :, ch] = sosfilt(self.sos, held[:, 0], zi=self._z[:, :, ch])
        run = self._started & ~new
        if run.any():
            cols = np.flatnonzero(run)
            xs = self._held(x[:, cols], finite[:, cols], cols)
            y[:, cols], self._z[:, :, cols] = sosfilt(self.sos, xs, axis=0, zi=self._z[:, :, cols])
        y[~finite] = np.nan
        self._all_started = bool(self._started.all())
        return y

    def _step(self, x: np.ndarray) -> np.ndarray:
        """Few finite samples, every channel started: ``sosfilt``'s recursion written out.

        Direct form II transposed per section, the same operations in the same order as
        scipy's ``sosfilt`` (identical results), without its per-call overhead (~100 us).
        """
        y = np.empty(x.shape)
        _sos_steps(np.ascontiguousarray(x, dtype=np.float64), self._coef, self._z, y)
        self._last[:] = x[-1]
        return y

    def _held(self, x: np.ndarray, finite: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``x`` with NaN replaced by the channel's last finite value (carried across calls)."""
        idx = np.where(finite, np.arange(len(x))[:, None], -1)
        last = np.maximum.accumulate(idx, axis=0)
        out = np.where(last >= 0, np.take_along_axis(x, np.maximum(last, 0), axis=0),
                       self._last[cols])
        if len(x):
            self._last[cols] = out[-1]
        return out


@njit(cache=True)
def _sos_steps(x: np.ndarray, coef: np.ndarray, z: np.ndarray, y: np.ndarray) -> None:
    """Second-order sections over (n, channels) ``x`` into ``y``; state ``z`` (sections, 2, channels)."""
    for k in range(x.shape[0]):
        for ch in range(x.shape[1]):
            xn = x[k, ch]
            for s in range(coef.shape[0]):
                b0, b1, b2, a1, a2 = coef[s, 0], coef[s, 1], coef[s, 2], coef[s, 3], coef[s, 4]
                xc = b0 * xn + z[s, 0, ch]
                z[s, 0, ch] = b1 * xn - a1 * xc + z[s, 1, ch]
                z[s, 1, ch] = b2 * xn - a2 * xc
                xn = xc
            y[k, ch] = xn
