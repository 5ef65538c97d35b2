"""Gyroscope bias estimation at rest, streaming: rest over a window, confirmed rest into the bias."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EPOCH = 4096  # samples: the running window sums are recomputed from the window this often


class RestBiasEstimator:
    """Detects rest per sensor and tracks the gyro bias from samples confirmed at rest.

    A window of ``window`` samples is *still* when every gyro axis varies less than
    ``gyr_std`` (rad/s, standard deviation), every acc axis less than ``acc_std``
    (m/s^2), the mean of every gyro axis is within ``+-bias_max`` (rad/s: a steady
    turn faster than that is rotation, not bias) and no value is NaN.

    - ``rest`` (returned per sample): the window ending at the sample is still (rest
      detected now; the filter's AT_REST flag).
    - A sample is *confirmed rest* when every window that contains it is still: the
      windows ending at it and at each of the ``window - 1`` samples after it. Sample
      ``j`` is therefore known to be rest only at sample ``j + window - 1``, and only then
      enters the bias. A motion onset, even one slow enough that the trailing window
      still looks still for a while, lies in a window together with the motion after it
      and never counts: the bias applied to sample ``k`` uses confirmed samples up to
      ``k - window + 1`` only (delayed by ``window - 1`` samples).

    The bias is the mean of a sensor's confirmed samples until there are ``tau`` of
    them, then a first-order low-pass (time constant ``tau`` samples): each confirmed
    gyro sample ``g`` moves it by ``a = max(1 / count, alpha)``: ``a g + (1 - a) bias``.
    It starts at 0 and holds outside rest.

    Everything is O(1) per sample in one compiled scan (:func:`_rest_scan`): per channel,
    running sums of ``y = x - ref`` and ``y**2`` over the window (a sample enters, the one
    ``window`` samples older leaves), with ``ref`` a recent value of the channel so the
    variance ``E[y^2] - E[y]^2`` loses no digits; the run of still windows per sensor;
    the confirmed sample is the oldest one in the stored window. Every ``EPOCH`` samples
    (counted from the first) the sums are recomputed from the stored window with a new
    ``ref``, so rounding never builds up over long streams. The state is carried exactly
    between calls and the same code runs per sample, so every result is the same bits
    whatever the block sizes (one sample at a time, live, or an hour at once).

    Args:
        n_imu: number of sensors.
        window: rest-detection window, samples (>= 2).
        gyr_std: rad/s, rest threshold on each gyro axis' standard deviation.
        acc_std: m/s^2, rest threshold on each acc axis' standard deviation.
        tau: bias low-pass time constant, samples.
        bias_max: rad/s, largest gyro-axis mean (bias) a still window may have.
    """

    def __init__(self, n_imu: int, *, window: int, gyr_std: float, acc_std: float,
                 tau: float, bias_max: float = math.inf) -> None:
        if window < 2 or tau <= 0 or not bias_max > 0:
            raise ValueError(f"RestBiasEstimator: window must be >= 2 samples, tau > 0 and "
                             f"bias_max > 0; got window={window}, tau={tau}, bias_max={bias_max}")
        self.window, self.gyr_std, self.acc_std, self.bias_max = window, gyr_std, acc_std, bias_max
        self.alpha = 1.0 - np.exp(-1.0 / tau)
        self.bias = np.zeros((n_imu, 3))  # rad/s, sensor frame
        self.confirmed = np.zeros(n_imu, np.int64)  # confirmed rest samples in the bias so far
        self._var_max = np.array([acc_std ** 2] * 3 + [gyr_std ** 2] * 3)  # acc, gyr axes
        self._k = 0  # samples seen
        self._ring = np.full((window, n_imu, 6), np.nan)  # last `window` samples (slot k % window)
        self._ref = np.zeros((n_imu, 6))  # the current epoch's reference value per channel
        self._s = np.zeros((2, n_imu, 6))  # window sums of y and y*y up to sample k - 1
        self._last_bad = np.full(n_imu, -1, np.int64)  # last sample with NaN (-1: before start)
        self._run = np.zeros(n_imu, np.int64)  # consecutive still windows up to sample k - 1

    @property
    def started(self) -> np.ndarray:
        """(n_imu,) bool: sensors whose bias has had a confirmed rest sample."""
        return self.confirmed > 0

    def update(self, acc: np.ndarray, gyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed (n, n_imu, 3) acc (m/s^2) and gyr (rad/s), sensor frame.

        Returns ``rest`` (n, n_imu) bool, the window ending at each sample is still, and
        ``bias`` (n, n_imu, 3) rad/s, the bias estimate to subtract from each sample's ``gyr``.
        """
        n, n_imu = gyr.shape[:2]
        acc = acc if isinstance(acc, np.ndarray) and acc.dtype.kind == "f" else np.asarray(
            acc, np.float64)
        gyr = gyr if isinstance(gyr, np.ndarray) and gyr.dtype.kind == "f" else np.asarray(
            gyr, np.float64)
        rest = np.empty((n, n_imu), bool)
        bias = np.empty((n, n_imu, 3))
        # float32 or float64, any strides (e.g. the fields of a frame array): no copies
        self._k = _rest_scan(acc, gyr, self._k, EPOCH, self._ring, self._ref, self._s,
                             self._last_bad, self._var_max, self.bias_max, self._run,
                             self.confirmed, self.bias, self.alpha, rest, bias)
        return rest, bias

    def update_samples(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update` for (n, n_imu, 2, 3) samples: ``[..., 0, :]`` acc (m/s^2),
        ``[..., 1, :]`` gyr (rad/s)."""
        return self.update(x[:, :, 0], x[:, :, 1])


@njit(cache=True)
def _recompute_sums(k: int, ring: np.ndarray, ref: np.ndarray, s: np.ndarray) -> None:
    """New epoch at sample ``k``: ``ref`` = the latest finite sample per channel, and the
    window sums ``s`` of ``y = x - ref`` over samples k-window .. k-1 from the stored window."""
    w = ring.shape[0]
    prev = (k - 1) % w
    for i in range(ring.shape[1]):
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


@njit(cache=True)
def _rest_scan(acc: np.ndarray, gyr: np.ndarray, k: int, epoch: int, ring: np.ndarray,
               ref: np.ndarray, s: np.ndarray, last_bad: np.ndarray, var_max: np.ndarray,
               bias_max: float, run: np.ndarray, confirmed: np.ndarray, bias: np.ndarray,
               alpha: float, rest: np.ndarray, bias_out: np.ndarray) -> int:
    """Rest flags (n, n_imu) and the bias to subtract (n, n_imu, 3, rad/s) of ``acc``, ``gyr``.

    ``acc``, ``gyr``: (n, n_imu, 3) float32 or float64, read as float64 (channels 0-2 acc,
    3-5 gyr). ``k`` is the index of the first sample in the stream; ``ring`` (window,
    n_imu, 6) the raw samples, sample j in slot j % window (NaN before the first); ``ref``
    (n_imu, 6) the epoch's reference; ``s`` (2, n_imu, 6) the sums of y and y*y over
    samples k-window .. k-1; ``last_bad`` (n_imu,) the last sample with a non-finite
    value; ``run`` (n_imu,) the still windows in a row; ``confirmed`` (n_imu,) the
    confirmed samples so far; ``bias`` (n_imu, 3) the estimate. All updated in place.
    Returns the index after the last sample.
    """
    w = ring.shape[0]
    n_imu = acc.shape[1]
    for t in range(acc.shape[0]):
        slot = k % w
        if k % epoch == 0:  # new epoch: reference = the latest sample, sums from the window
            _recompute_sums(k, ring, ref, s)
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
                if c >= 3 and not abs(ref[i, c] + mean) <= bias_max:
                    still = False
            if bad:
                last_bad[i] = k
            still = still and k - w + 1 > last_bad[i]
            rest[t, i] = still
            run[i] = run[i] + 1 if still else 0
            if run[i] >= w:  # every window holding sample k - w + 1 is still: it is rest
                _confirm(i, ring[(k + 1) % w, i], confirmed, bias, alpha)
            for c in range(3):
                bias_out[t, i, c] = bias[i, c]
        k += 1
    return k


@njit(cache=True)
def _confirm(i: int, sample: np.ndarray, confirmed: np.ndarray, bias: np.ndarray,
             alpha: float) -> None:
    """Sensor ``i``'s bias (rad/s) takes the confirmed rest ``sample`` (acc, gyr): the mean of
    the confirmed samples while there are fewer than 1 / alpha, then the low-pass."""
    confirmed[i] += 1
    a = max(1.0 / confirmed[i], alpha)
    for c in range(3):
        bias[i, c] = a * sample[3 + c] + (1.0 - a) * bias[i, c]
