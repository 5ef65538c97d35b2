"""Gyroscope bias estimation at rest, streaming: rest detection over a window, then a slow average."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter


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
        self._hist_gyr = np.full((window - 1, n_imu, 3), np.nan)
        self._hist_acc = np.full((window - 1, n_imu, 3), np.nan)

    def update(self, acc: np.ndarray, gyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed (n, n_imu, 3) acc (m/s^2) and gyr (rad/s), sensor frame.

        Returns ``rest`` (n, n_imu) bool and ``bias`` (n, n_imu, 3) rad/s, the bias
        estimate after each sample (subtract it from ``gyr``).
        """
        n, n_imu = gyr.shape[:2]
        g_all = np.concatenate([self._hist_gyr, gyr])
        a_all = np.concatenate([self._hist_acc, acc])
        gw = sliding_window_view(g_all, self.window, axis=0)  # (n, n_imu, 3, window)
        aw = sliding_window_view(a_all, self.window, axis=0)
        rest = (gw.std(axis=-1) < self.gyr_std).all(axis=-1) & (
            aw.std(axis=-1) < self.acc_std).all(axis=-1)  # NaN compares False
        bias_out = np.empty((n, n_imu, 3))
        for i in range(n_imu):
            bias_out[:, i] = self._track(i, rest[:, i], gyr[:, i], gw[:, i])
        self._hist_gyr = g_all[len(g_all) - (self.window - 1):]
        self._hist_acc = a_all[len(a_all) - (self.window - 1):]
        return rest, bias_out

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
