"""ClockMapper: offset and drift of simulated sensor clocks against host time, with jitter."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.sync.clock_mapper import ClockMapper

FS = 100.0


def _clocks(seed: int, seconds: float = 40.0, drift: float = 50e-6, bursts: int = 10,
            mean_delay_s: float = 0.003) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sensor times, host receive times and true host capture times (int64 ns)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t_sensor = (np.arange(n) * 1e9 / FS).astype(np.int64) + 987_654_321_000
    t_true = 7_000_000_000_000 + np.rint((t_sensor - t_sensor[0]) * (1 + drift)).astype(np.int64)
    delay = rng.exponential(mean_delay_s, n)
    for start in rng.integers(0, n - 40, bursts):  # BLE-like stalls: a burst of late samples
        delay[start:start + 30] += np.linspace(0.06, 0.0, 30)
    return t_sensor, t_true + np.rint(delay * 1e9).astype(np.int64), t_true


@pytest.mark.parametrize("seed,drift", [(0, 50e-6), (1, -50e-6), (2, 20e-6)])
def test_aligns_within_1ms_after_convergence(seed: int, drift: float) -> None:
    t_sensor, t_host, t_true = _clocks(seed, drift=drift)
    mapper = ClockMapper()
    mapped = mapper.update(t_sensor, t_host)
    err_ms = np.abs(mapped - t_true) / 1e6
    assert err_ms[int(2 * FS):].max() < 1.0
    assert err_ms[int(10 * FS):].max() < 0.3
    assert mapper.fit.drift == pytest.approx(drift, abs=10e-6)
    # map() with the final fit agrees with the truth over the whole recording
    assert np.abs(mapper.map(t_sensor) - t_true).max() / 1e6 < 0.5


def test_independent_of_block_size() -> None:
    t_sensor, t_host, _ = _clocks(3, seconds=10.0)
    whole = ClockMapper().update(t_sensor, t_host)
    for size in (1, 7, 333):
        mapper = ClockMapper()
        parts = [mapper.update(t_sensor[i:i + size], t_host[i:i + size])
                 for i in range(0, len(t_sensor), size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("case", ["bursts", "long_bursts", "jump", "back", "late"])
def test_block_path_equals_sample_by_sample_over_long_runs(case: str) -> None:
    """Beyond the 30 s window, with delay bursts longer than a bin (outlier bins dropped),
    clock jumps and a lasting latency step: blocks of any size (the vectorised block path)
    and the general per-segment path give the very same times and resets."""
    t_sensor, t_host, _ = _clocks(8, seconds=90.0, bursts=40 if case == "bursts" else 5)
    t_sensor, t_host = t_sensor.copy(), t_host.copy()
    half = len(t_sensor) // 2
    if case == "long_bursts":  # 1.5 s of +20 ms: whole bins far above the line
        for start in (1500, 4000, 6000, 7700):
            t_host[start:start + 150] += 20_000_000
    elif case == "jump":
        t_sensor[half:] += 10**10
    elif case == "back":
        t_sensor[half:] -= 3 * 10**8
    elif case == "late":
        t_host[half:] += 10**9
    ref = ClockMapper()
    ref._block = lambda *args: False  # the general path only
    whole = ref.update(t_sensor, t_host)
    for size in (1, 7, 160, 1000, len(t_sensor)):
        mapper = ClockMapper()
        parts = [mapper.update(t_sensor[i:i + size], t_host[i:i + size])
                 for i in range(0, len(t_sensor), size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        assert mapper.resets == ref.resets == (case in ("jump", "back", "late"))
        assert (mapper._offset, mapper._drift) == (ref._offset, ref._drift)


def test_one_window_fit_equals_the_batched_fit() -> None:
    """_refit (one window, Python floats) and _fit_windows (rows of windows) agree bit for bit,
    with and without outlier bins, for full and partial windows."""
    from nodes.sync.clock_mapper import _fit_windows
    rng = np.random.default_rng(9)
    mapper = ClockMapper()
    w = mapper.max_bins
    for trial in range(200):
        k = int(rng.integers(1, w + 1))
        t = np.sort(rng.choice(10**6, k, replace=False)).astype(np.float64) * 5e8 + 3e12
        d = np.rint(4e5 + 3e-5 * (t - 3e12) + rng.exponential(3e5, k))
        d[rng.random(k) < 0.1] += 5e6  # outliers
        mapper._bins_t, mapper._bins_d = t.tolist(), d.tolist()
        mapper._refit()
        pad = w - k
        off, drift = _fit_windows(np.concatenate((np.zeros(pad), t))[None],
                                  np.concatenate((np.zeros(pad), d))[None],
                                  (np.arange(w) >= pad)[None], mapper.bin_ns, mapper.outlier_ns)
        assert (mapper._offset, mapper._drift) == (off[0], drift[0]), trial


def test_mapped_times_never_later_than_receipt_once_converged() -> None:
    t_sensor, t_host, _ = _clocks(4)
    mapped = ClockMapper().update(t_sensor, t_host)
    assert (mapped[int(2 * FS):] <= t_host[int(2 * FS):] + 300_000).all()


@pytest.mark.parametrize("jump_s", [-100.0, -0.3, 10.0])
def test_sensor_clock_reset_is_detected_and_followed(jump_s: float) -> None:
    t_sensor, t_host, t_true = _clocks(5)
    half = len(t_sensor) // 2
    t_sensor = t_sensor.copy()
    t_sensor[half:] += int(jump_s * 1e9)
    mapper = ClockMapper()
    mapped = mapper.update(t_sensor, t_host)
    assert mapper.resets == 1
    err_ms = np.abs(mapped - t_true) / 1e6
    assert err_ms[int(2 * FS):half].max() < 1.0
    assert err_ms[half + int(2 * FS):].max() < 1.0
    one = ClockMapper()  # the one-sample fast path takes the same decisions
    stepped = np.concatenate([one.update(t_sensor[i:i + 1], t_host[i:i + 1])
                              for i in range(len(t_sensor))])
    np.testing.assert_array_equal(stepped, mapped)
    assert one.resets == 1


def test_host_latency_step_is_followed() -> None:
    """A lasting +1 s step in transport delay (host stall, resync) ends in a reset."""
    t_sensor, t_host, t_true = _clocks(6, bursts=0)
    half = len(t_sensor) // 2
    t_host = t_host.copy()
    t_host[half:] += 1_000_000_000
    mapper = ClockMapper()
    mapped = mapper.update(t_sensor, t_host)
    assert mapper.resets == 1
    err_ms = (mapped[half + int(5 * FS):] - t_true[half + int(5 * FS):]) / 1e6
    assert np.abs(err_ms - 1000.0).max() < 1.0


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_s"):
        ClockMapper(bin_s=1.0, window_s=1.0)
    with pytest.raises(ValueError, match="same length"):
        ClockMapper().update(np.zeros(3, np.int64), np.zeros(2, np.int64))
    with pytest.raises(RuntimeError, match="no samples"):
        ClockMapper().map(np.zeros(3, np.int64))


def test_line_fit_equals_polyfit() -> None:
    from nodes.sync.clock_mapper import _line_fit
    rng = np.random.default_rng(7)
    t = np.rint(np.sort(rng.uniform(0, 3e10, 60)))  # bins: whole ns
    d = np.rint(1234.5 + 3e-5 * t + rng.normal(0, 2e4, 60))
    drift, offset = _line_fit(t, d)
    ref_drift, ref_offset = np.polyfit(t, d, 1)
    assert drift == pytest.approx(ref_drift, rel=1e-9)
    assert offset == pytest.approx(ref_offset, rel=1e-9, abs=1e-3)
    # centred sums: points on a line an hour from t = 0 give that line to rounding
    t = np.arange(60) * 500_000_000.0 + 3.6e12
    drift, offset = _line_fit(t, 7_000 + (t - 3.6e12) // 50_000)
    assert drift == pytest.approx(2e-5, rel=1e-12)
    assert offset == pytest.approx(7_000 - 3.6e12 * 2e-5, rel=1e-12)
