"""Gyroscope bias estimation at rest, streaming: rest detection over a window, then a slow average."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

_ROOM = 256  # samples of room after the history before the buffer is shifted


class RestBiasEstimator:
    """Detects rest per sensor and tracks the gyro bias while resting.

    A sample is *at rest* when, over the last ``window`` samples (it included),
    every gyro axis varies less than ``gyr_std`` (rad/s, standard deviation) and
    every acc axis less than ``acc_std`` (m/s^2); windows with NaN are never at
    rest. At the first rest of a sensor the bias starts at the window's gyro
    mean; afterwards each rest sample moves it by ``alpha`` towards the sample
    (first-order low-pass, time constant ``window_tau`` samples). Outside rest the
    bias holds. All state is carried between calls, so results do not depend on
    block sizes.

    Args:
        n_imu: number of sensors.
        window: rest-detection window, samples (>= 2).
        gyr_std: rad/s, rest threshold on each gyro axis' standard deviation.
        acc_std: m/s^2, rest threshold on each acc axis' standard deviation.
        tau: bias low-pass time constant, samples.
    """

    def __init__(self, n_imu: int, *, window: int, gyr_std: float, acc_std: float,
                 tau: float) -> None:
        if window < 2 or tau <= 0:
            raise ValueError(f"RestBiasEstimator: window must be >= 2 samples and tau > 0; got "
                             f"window={window}, tau={tau}")
        self.window, self.gyr_std, self.acc_std = window, gyr_std, acc_std
        self.alpha = 1.0 - np.exp(-1.0 / tau)
        self.bias = np.zeros((n_imu, 3))  # rad/s, sensor frame
        self.started = np.zeros(n_imu, bool)
        # the last window-1 samples (NaN before the first) followed by room for new ones:
        # [pos - (window - 1), pos) is the history; a full buffer is shifted or grown
        self._buf = np.full((window - 1 + _ROOM, n_imu, 2, 3), np.nan)  # [..., 0, :] acc, 1 gyr
        self._pos = window - 1

    def update(self, acc: np.ndarray, gyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed (n, n_imu, 3) acc (m/s^2) and gyr (rad/s), sensor frame.

        Returns ``rest`` (n, n_imu) bool and ``bias`` (n, n_imu, 3) rad/s, the bias
        estimate after each sample (subtract it from ``gyr``).
        """
        n, n_imu = gyr.shape[:2]
        both = self._append(acc, gyr)  # (window - 1 + n, n_imu, 2, 3): history + new
        if n == 1:  # the one window is the whole buffer (same sums as sliding_window_view)
            std = both.std(axis=0)[None]
        else:
            std = sliding_window_view(both, self.window, axis=0).std(axis=-1)
        rest = (std[:, :, 1] < self.gyr_std).all(axis=-1) & (
            std[:, :, 0] < self.acc_std).all(axis=-1)  # NaN compares False
        bias_out = np.empty((n, n_imu, 3))
        resting = rest.any(axis=0)
        for i in range(n_imu):
            if resting[i]:
                windows = sliding_window_view(both[:, i, 1], self.window, axis=0)  # (n, 3, window)
                bias_out[:, i] = self._track(i, rest[:, i], gyr[:, i], windows)
            else:  # no rest in this block: the bias holds
                bias_out[:, i] = self.bias[i]
        return rest, bias_out

    def _append(self, acc: np.ndarray, gyr: np.ndarray) -> np.ndarray:
        """Store new samples after the history; return a view of history + new (n_imu, 2, 3)."""
        n, h = len(gyr), self.window - 1
        if self._pos + n > len(self._buf):
            rows = h + max(n, _ROOM)
            old = self._buf
            buf = old if rows <= len(old) else np.empty((rows, *old.shape[1:]))
            buf[:h] = old[self._pos - h:self._pos]
            self._buf, self._pos = buf, h
        a, b = self._pos, self._pos + n
        self._buf[a:b, :, 0] = acc
        self._buf[a:b, :, 1] = gyr
        self._pos = b
        return self._buf[a - h:b]

    def _track(self, i: int, rest: np.ndarray, gyr: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Bias after each sample for sensor ``i``: (n, 3) rad/s."""
        old = self.bias[i].copy()
        idx = np.flatnonzero(rest)
        if len(idx) == 0:
            return np.broadcast_to(old, (len(rest), 3))
        vals = np.empty((len(idx), 3))  # bias after each rest sample
        cur, start = old, 0
        if not self.started[i]:  # first rest: start from the window mean
            cur = vals[0] = windows[idx[0]].mean(axis=-1)
            self.started[i], start = True, 1
        if len(idx) > start:
            a = self.alpha
            vals[start:], _ = lfilter([a], [1.0, a - 1.0], gyr[idx[start:]], axis=0,
                                      zi=((1.0 - a) * cur)[None, :])
        self.bias[i] = vals[-1]
        pos = np.full(len(rest), -1)
        pos[idx] = np.arange(len(idx))
        last = np.maximum.accumulate(pos)  # last rest sample at or before each sample
        return np.where((last >= 0)[:, None], vals[np.maximum(last, 0)], old)
