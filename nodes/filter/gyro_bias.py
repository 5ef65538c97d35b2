"""Gyroscope bias estimation at rest, streaming: rest detection over a window, then a slow average."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.signal import lfilter

EPOCH = 4096  # samples: the running window sums are recomputed from the window this often


class RestBiasEstimator:
    """Detects rest per sensor and tracks the gyro bias while resting.

    A sample is *at rest* when, over the last ``window`` samples (it included),
    every gyro axis varies less than ``gyr_std`` (rad/s, standard deviation) and
    every acc axis less than ``acc_std`` (m/s^2); windows with NaN are never at
    rest. At the first rest of a sensor the bias starts at the window's gyro
    mean; afterwards each rest sample moves it by ``alpha`` towards the sample
    (first-order low-pass ``scipy.signal.lfilter``, time constant ``tau`` samples).
    Outside rest the bias holds.

    Rest detection is O(1) per sample (:func:`_rest_scan`, compiled): per channel,
    running sums of ``y = x - ref`` and ``y**2`` over the window (a sample enters,
    the one ``window`` samples older leaves), with ``ref`` a recent value of the
    channel so the variance ``E[y^2] - E[y]^2`` loses no digits. Every ``EPOCH``
    samples (counted from the first) the sums are recomputed from the stored window
    with a new ``ref``, so rounding never builds up over long streams. The state
    (window, sums, sample count) is carried exactly between calls and the same code
    runs per sample, so every result is the same bits whatever the block sizes (one
    sample at a time, live, or an hour at once).

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
        self._var_max = np.array([acc_std ** 2] * 3 + [gyr_std ** 2] * 3)  # acc, gyr axes
        self._k = 0  # samples seen
        self._ring = np.full((window, n_imu, 6), np.nan)  # last `window` samples (slot k % window)
        self._ref = np.zeros((n_imu, 6))  # the current epoch's reference value per channel
        self._s = np.zeros((2, n_imu, 6))  # window sums of y and y*y up to sample k - 1
        self._last_bad = np.full(n_imu, -1, np.int64)  # last sample with NaN (-1: before start)

    def update(self, acc: np.ndarray, gyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed (n, n_imu, 3) acc (m/s^2) and gyr (rad/s), sensor frame.

        Returns ``rest`` (n, n_imu) bool and ``bias`` (n, n_imu, 3) rad/s, the bias
        estimate after each sample (subtract it from ``gyr``).
        """
        n, n_imu = gyr.shape[:2]
        acc = acc if isinstance(acc, np.ndarray) and acc.dtype.kind == "f" else np.asarray(
            acc, np.float64)
        gyr = gyr if isinstance(gyr, np.ndarray) and gyr.dtype.kind == "f" else np.asarray(
            gyr, np.float64)
        rest = np.empty((n, n_imu), bool)
        mean_g = np.empty((n, n_imu, 3))  # window gyro mean (for a sensor's first rest)
        # float32 or float64, any strides (e.g. the fields of a frame array): no copies
        self._k = _rest_scan(acc, gyr, self._k, EPOCH, self._ring, self._ref, self._s,
                             self._last_bad, self._var_max, rest, mean_g)
        if n == 1:  # the live case: one sample for all sensors in one compiled call
            out = np.empty((1, n_imu, 3))
            _track_one(rest[0], gyr[0], mean_g[0], self.bias, self.started, self.alpha, out[0])
            return rest, out
        resting = rest.any(axis=0)
        if not resting.any():  # no rest in this block: the bias holds
            return rest, np.broadcast_to(self.bias.copy(), (n, n_imu, 3))
        bias_out = np.empty((n, n_imu, 3))
        for i in range(n_imu):
            if resting[i]:
                bias_out[:, i] = self._track(i, rest[:, i], gyr[:, i], mean_g[:, i])
            else:
                bias_out[:, i] = self.bias[i]
        return rest, bias_out

    def update_samples(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update` for (n, n_imu, 2, 3) samples: ``[..., 0, :]`` acc (m/s^2),
        ``[..., 1, :]`` gyr (rad/s). The returned bias may be a read-only broadcast view."""
        return self.update(x[:, :, 0], x[:, :, 1])

    def _track(self, i: int, rest: np.ndarray, gyr: np.ndarray, mean_g: np.ndarray) -> np.ndarray:
        """Bias after each sample for sensor ``i``: (n, 3) rad/s."""
        old = self.bias[i].copy()
        idx = np.flatnonzero(rest)
        if len(idx) == 0:
            return np.broadcast_to(old, (len(rest), 3))
        vals = np.empty((len(idx), 3))  # bias after each rest sample
        cur, start = old, 0
        if not self.started[i]:  # first rest: start from the window mean
            cur = vals[0] = mean_g[idx[0]]
            self.started[i], start = True, 1
        if len(idx) > start:
            a = self.alpha
            vals[start:], _ = lfilter([a], [1.0, a - 1.0],
                                      np.asarray(gyr[idx[start:]], np.float64), axis=0,
                                      zi=((1.0 - a) * cur)[None, :])
        self.bias[i] = vals[-1]
        pos = np.full(len(rest), -1)
        pos[idx] = np.arange(len(idx))
        last = np.maximum.accumulate(pos)  # last rest sample at or before each sample
        return np.where((last >= 0)[:, None], vals[np.maximum(last, 0)], old)


@njit(cache=True)
def _track_one(rest: np.ndarray, gyr: np.ndarray, mean_g: np.ndarray, bias: np.ndarray,
               started: np.ndarray, alpha: float, out: np.ndarray) -> None:
    """One sample of :meth:`RestBiasEstimator._track` for all sensors; ``out`` (n_imu, 3) rad/s.

    The same operations as the per-sensor filter (a * g + (1 - a) * bias at rest, the window
    mean at a sensor's first rest), so the result does not depend on the block size.
    """
    for i in range(bias.shape[0]):
        if rest[i]:
            for c in range(3):
                if started[i]:
                    bias[i, c] = alpha * np.float64(gyr[i, c]) + (1.0 - alpha) * bias[i, c]
                else:
                    bias[i, c] = mean_g[i, c]
            started[i] = True
        for c in range(3):
            out[i, c] = bias[i, c]


@njit(cache=True)
def _rest_scan(acc: np.ndarray, gyr: np.ndarray, k: int, epoch: int, ring: np.ndarray,
               ref: np.ndarray, s: np.ndarray, last_bad: np.ndarray, var_max: np.ndarray,
               rest: np.ndarray, mean_g: np.ndarray) -> int:
    """Rest flags (n, n_imu) and window gyro means (n, n_imu, 3) of samples ``acc``, ``gyr``.

    ``acc``, ``gyr``: (n, n_imu, 3) float32 or float64, read as float64 (channels 0-2 acc,
    3-5 gyr). ``k`` is the index of the first sample in the stream; ``ring`` (window,
    n_imu, 6) the raw samples, sample j in slot j % window (NaN before the first); ``ref``
    (n_imu, 6) the epoch's reference; ``s`` (2, n_imu, 6) the sums of y and y*y over
    samples k-window .. k-1; ``last_bad`` (n_imu,) the last sample with a non-finite
    value. All updated in place. Returns the index after the last sample.
    """
    w = ring.shape[0]
    n_imu = acc.shape[1]
    for t in range(acc.shape[0]):
        slot = k % w
        if k % epoch == 0:  # new epoch: reference = the latest sample, sums from the window
            prev = (k - 1) % w
            for i in range(n_imu):
                for c in range(6):
                    v = ring[prev, i, c]
                    if math.isfinite(v):
                        ref[i, c] = v
                    s1 = 0.0
                    s2 = 0.0
                    for j in range(k - w, k):
                        y = ring[j % w, i, c] - ref[i, c]
                        if math.isfinite(y):
                            s1 += y
                            s2 += y * y
                    s[0, i, c] = s1
                    s[1, i, c] = s2
        for i in range(n_imu):
            bad = False
            still = True
            for c in range(6):
                xv = np.float64(acc[t, i, c]) if c < 3 else np.float64(gyr[t, i, c - 3])
                yn = xv - ref[i, c]
                if not math.isfinite(yn):
                    yn = 0.0
                    bad = True
                yo = ring[slot, i, c] - ref[i, c]  # the sample leaving the window
                if not math.isfinite(yo):
                    yo = 0.0
                ring[slot, i, c] = xv
                s1 = s[0, i, c] + (yn - yo)
                s2 = s[1, i, c] + (yn * yn - yo * yo)
                s[0, i, c] = s1
                s[1, i, c] = s2
                mean = s1 / w
                if not s2 / w - mean * mean < var_max[c]:
                    still = False
                if c >= 3:
                    mean_g[t, i, c - 3] = ref[i, c] + mean
            if bad:
                last_bad[i] = k
            rest[t, i] = still and k - w + 1 > last_bad[i]
        k += 1
    return k
