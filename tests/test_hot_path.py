"""Fast paths of the per-sample hot path give the same results as the general code."""

from __future__ import annotations

import numpy as np
from scipy.signal import sosfilt

from nodes.filter.gyro_bias import RestBiasEstimator
from nodes.filter.lowpass import StreamingLowpass
from nodes.sync.sensor_track import Limits, SensorTrack
from pipeline.runtime.streams import RAW_IMU_DTYPE, FrameFlag


def test_lowpass_sample_by_sample_equals_scipy_sosfilt_on_the_whole_signal() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 12)) * 5
    for order in (1, 2, 4):
        lp = StreamingLowpass(12, cutoff_hz=8.0, rate_hz=100.0, order=order)
        y = np.concatenate([lp(x[i:i + 1]) for i in range(len(x))])  # 1-sample fast path
        ref = StreamingLowpass(12, cutoff_hz=8.0, rate_hz=100.0, order=order)
        whole = ref(x)  # scipy path
        zi = ref._zi0[:, :, None] * x[0]
        expect, _ = sosfilt(ref.sos, x, axis=0, zi=zi)
        np.testing.assert_array_equal(y, whole)
        np.testing.assert_allclose(whole, expect, atol=1e-9)


def test_lowpass_fast_path_keeps_nan_handling() -> None:
    x = np.ones((50, 2))
    x[20:25, 1] = np.nan
    lp = StreamingLowpass(2, cutoff_hz=5.0, rate_hz=100.0, order=2)
    y = np.concatenate([lp(x[i:i + 1]) for i in range(len(x))])
    assert np.isnan(y[20:25, 1]).all() and np.isfinite(y[25:, 1]).all()
    np.testing.assert_allclose(y[:, 0], 1.0, atol=1e-12)  # steady state from the first sample


def _raw(t_ns: np.ndarray, acc: np.ndarray) -> np.ndarray:
    raw = np.zeros(len(t_ns), RAW_IMU_DTYPE)
    raw["t_sensor"] = -1
    raw["counter"] = -1
    raw["t_host"] = t_ns
    raw["acc"] = acc
    raw["gyr"] = 0.1
    return raw


def test_frame_on_a_sample_followed_by_an_invalid_one_takes_that_sample() -> None:
    t = np.arange(4, dtype=np.int64) * 10_000_000
    acc = np.array([[1.0, 0, 0], [2.0, 0, 0], [np.nan, 0, 0], [4.0, 0, 0]])
    track = SensorTrack("s", max_gap_ns=100_000_000, dejitter=False, limits=Limits())
    track.add(_raw(t, acc), 100.0, 0)
    for grid in (t[1:2], t):  # one grid time (scalar path) and several (vector path)
        a, _, flags = track.resample(grid)
        k = list(grid).index(t[1])
        assert a[k, 0] == 2.0 and flags[k] == FrameFlag.OK
    a, _, flags = track.resample(np.array([15_000_000, 25_000_000]))  # between 1 and 2 / 2 and 3
    assert np.isnan(a).all() and (flags == FrameFlag.INVALID).all()


def test_sensor_track_scalar_and_vector_resampling_agree_across_buffer_growth() -> None:
    rng = np.random.default_rng(1)
    n = 1500  # more than the initial buffer: it is compacted and grown on the way
    t = np.cumsum(rng.integers(8_000_000, 12_000_000, n)).astype(np.int64)
    keep = rng.random(n) > 0.05  # lost samples
    acc = rng.normal(size=(n, 3))
    a = SensorTrack("a", max_gap_ns=25_000_000, dejitter=False, limits=Limits())
    b = SensorTrack("b", max_gap_ns=25_000_000, dejitter=False, limits=Limits())
    raw = _raw(t[keep], acc[keep])
    a.add(raw, 100.0, 0)
    grid = np.arange(t[0], t[-1], 10_000_000, dtype=np.int64)
    acc_v, _, flags_v = a.resample(grid)
    out = []
    j = 0
    for g in grid:  # samples arrive one by one, frames are resampled one at a time
        while j < len(raw) and raw["t_host"][j] <= g + 30_000_000:
            b.add(raw[j:j + 1], 100.0, 0)
            j += 1
        out.append(b.resample(np.array([g])))
        b.trim_before(int(g))
    acc_s = np.concatenate([o[0] for o in out])
    flags_s = np.concatenate([o[2] for o in out])
    np.testing.assert_array_equal(flags_s, flags_v)
    np.testing.assert_array_equal(acc_s, acc_v)


def test_rest_bias_estimator_same_result_for_single_samples_and_blocks() -> None:
    rng = np.random.default_rng(2)
    n = 900
    gyr = rng.normal(0, 0.2, (n, 3, 3))
    gyr[300:600] = 0.02 + rng.normal(0, 0.002, (300, 3, 3))  # rest with a bias
    acc = np.full((n, 3, 3), [0.0, 0.0, 9.81]) + rng.normal(0, 0.01, (n, 3, 3))
    one = RestBiasEstimator(3, window=50, gyr_std=0.01, acc_std=0.1, tau=100.0)
    blk = RestBiasEstimator(3, window=50, gyr_std=0.01, acc_std=0.1, tau=100.0)
    r1 = [one.update(acc[i:i + 1], gyr[i:i + 1]) for i in range(n)]
    r7 = [blk.update(acc[i:i + 7], gyr[i:i + 7]) for i in range(0, n, 7)]
    rest1, bias1 = np.concatenate([r[0] for r in r1]), np.concatenate([r[1] for r in r1])
    rest7, bias7 = np.concatenate([r[0] for r in r7]), np.concatenate([r[1] for r in r7])
    assert rest1[350:600].all() and not rest1[:300].any()
    np.testing.assert_array_equal(rest1, rest7)
    np.testing.assert_allclose(bias1, bias7, atol=1e-12)
    np.testing.assert_allclose(bias1[-1], 0.02, atol=0.003)
