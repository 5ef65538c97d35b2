"""Filter node: block-size independence, gyro bias at rest, axis remapping, low-pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt, sosfilt_zi

from nodes.filter import Filter, RestBiasEstimator, rotation_from_spec
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.streams import FrameFlag, frame_dtype, frame_info
from pipeline.runtime.testing import make_block

RATE = 100.0
INFO = frame_info("sync/imu.frame", ["thigh", "shank"], RATE)


def _frames(seconds: float, seed: int, rest_s: float = 3.0) -> np.ndarray:
    """Two IMUs: rest for ``rest_s``, then motion; gyro bias per sensor; white noise; a NaN
    stretch on the shank 1.0-1.1 s into the motion."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n, frame_dtype(2))
    out["t_host"] = 10**12 + np.arange(n) * 10_000_000
    moving = (t >= rest_s)[:, None, None]
    motion = np.sin(2 * np.pi * 1.3 * t)[:, None, None] * np.array([[1.0, 0.5, -0.3]])
    bias = np.array([[0.04, -0.03, 0.02], [-0.05, 0.01, 0.03]])
    out["gyr"] = bias + moving * motion + rng.normal(0, 0.012, (n, 2, 3))
    out["acc"] = np.array([0.0, 0.0, 9.81]) + moving * 2 * motion + rng.normal(0, 0.05, (n, 2, 3))
    gap = slice(int((rest_s + 1.0) * RATE), int((rest_s + 1.1) * RATE))
    out["acc"][gap, 1] = np.nan  # a MISSING stretch on the shank
    out["gyr"][gap, 1] = np.nan
    out["flags"][gap, 1] = FrameFlag.MISSING
    return out


def _run(node: Filter, data: np.ndarray, block: int) -> np.ndarray:
    for i in range(0, len(data), block):
        node.on_block("frame", make_block(INFO, data[i:i + block], t_host=int(data["t_host"][i])))
    return np.concatenate([b.data for b in node.emitted])


@pytest.mark.parametrize("block", [1, 7, 250])
def test_same_output_whatever_the_block_size(block: int) -> None:
    data = _frames(8.0, 1)
    params = {"remap": {"shank": "x,-z,y"}, "cutoff_hz": 8.0, "order": 4}
    whole = _run(Filter.create(**params), data, len(data))
    parts = _run(Filter.create(**params), data, block)
    np.testing.assert_array_equal(parts["flags"], whole["flags"])
    np.testing.assert_array_equal(np.isnan(parts["gyr"]), np.isnan(whole["gyr"]))
    np.testing.assert_allclose(parts["acc"], whole["acc"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(parts["gyr"], whole["gyr"], atol=1e-6, rtol=0)


def test_rest_detection_is_bit_exact_for_any_block_size_over_long_runs() -> None:
    """Running window sums restart every EPOCH samples; rest flags and the (delayed) bias must
    not depend on how the samples are split (one at a time, live, or all at once), NaN
    stretches included."""
    from nodes.filter.gyro_bias import EPOCH
    rng = np.random.default_rng(5)
    n = 2 * EPOCH + 1500
    gyr = rng.normal(0, 0.3, (n, 2, 3))
    acc = np.array([0.0, 0.0, 9.81]) + rng.normal(0, 1.0, (n, 2, 3))
    for a in (1000, EPOCH - 60, 2 * EPOCH - 30):  # rests across the epoch boundaries
        gyr[a:a + 700] = [0.03, -0.02, 0.01] + rng.normal(0, 0.004, (700, 2, 3))
        acc[a:a + 700] = [0.3, 0.1, 9.8] + rng.normal(0, 0.02, (700, 2, 3))
    gyr[EPOCH + 100:EPOCH + 110, 1] = np.nan
    acc[EPOCH - 1, 0] = np.nan  # the reference sample of an epoch is NaN

    def run(size: int) -> tuple[np.ndarray, np.ndarray]:
        est = RestBiasEstimator(2, window=100, gyr_std=0.03, acc_std=0.3, tau=200.0,
                                bias_max=0.1)
        parts = [est.update(acc[i:i + size], gyr[i:i + size]) for i in range(0, n, size)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    rest, bias = run(n)
    assert rest[1200:1600].all() and rest[EPOCH + 200:EPOCH + 500, 0].all()
    assert not rest[EPOCH + 100:EPOCH + 209, 1].any()  # NaN within the window: never at rest
    assert not rest[:99].any() and rest.mean() < 0.5
    assert np.abs(bias[-1] - [0.03, -0.02, 0.01]).max() < 0.002  # confirmed rest only
    for size in (1, 13, 1000):
        r, b = run(size)
        np.testing.assert_array_equal(r, rest)
        np.testing.assert_array_equal(b, bias)


def test_bias_removed_at_rest_and_rest_flagged() -> None:
    data = _frames(10.0, 2, rest_s=5.0)
    node = Filter.create()
    out = _run(node, data, 10)
    rest = (out["flags"] & FrameFlag.AT_REST) > 0
    t = np.arange(len(out)) / RATE
    assert rest[(t > 1.05) & (t < 4.95)].all()  # the window ending here is still
    assert not rest[(t > 5.5)].any()  # moving
    assert not rest[t < 0.98].any()  # window not yet full
    # the first sample confirmed at rest is 0.99 s (its window full), confirmed 0.99 s later
    # when every window holding it has been still: no bias before 1.98 s
    corrected = out["gyr"].astype(np.float64) - data["gyr"]
    assert (corrected[t < 1.975] == 0).all() and (corrected[(t > 1.985) & (t < 5)] != 0).all()
    corrected = out["gyr"][(t > 3.0) & (t < 5.0)].astype(np.float64)
    assert np.abs(corrected.mean(axis=0)).max() < 0.004  # was up to 0.05 rad/s
    np.testing.assert_allclose(node._bias.bias, [[0.04, -0.03, 0.02], [-0.05, 0.01, 0.03]],
                               atol=0.004)
    # the bias holds during motion: corrected motion equals the true motion plus noise
    moving = t > 6.0
    motion = np.sin(2 * np.pi * 1.3 * t[moving])[:, None] * np.array([1.0, 0.5, -0.3])
    assert np.abs((out["gyr"][moving, 0] - motion).mean(axis=0)).max() < 0.005
    assert np.isnan(out["gyr"][600:610, 1]).all()  # NaN stays NaN, never a number
    assert (out["flags"][600:610, 1] & FrameFlag.MISSING).all()


def _rest_then_turn(onset: str, bias: np.ndarray, rest_s: float = 4.0, turn_s: float = 4.0,
                    step_rad_s: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """acc (m/s^2) and gyr (rad/s), (n, 1, 3), no noise: rest (z up, gyro = ``bias``), then a
    turn about the sensor's x axis (horizontal) that starts at a constant rate (``step``,
    ``step_rad_s`` at once) or at a constant angular acceleration (``ramp``, 0.3 rad/s^2 to
    0.6 rad/s), then rest again in the new attitude."""
    n_rest, n_turn = int(rest_s * RATE), int(turn_s * RATE)
    t = np.arange(n_turn) / RATE
    rate = np.full(n_turn, step_rad_s) if onset == "step" else np.minimum(0.3 * t, 0.6)
    rate = np.concatenate([np.zeros(n_rest), rate, np.zeros(n_rest)])
    angle = np.cumsum(rate) / RATE  # rad about x
    acc = 9.81 * np.stack([np.zeros_like(angle), np.sin(angle), np.cos(angle)], axis=1)
    gyr = bias + rate[:, None] * np.array([1.0, 0.0, 0.0])
    return acc[:, None], gyr[:, None]


@pytest.mark.parametrize("onset", ["step", "ramp"])
def test_motion_onset_never_enters_the_bias(onset: str) -> None:
    """A turn that starts slowly keeps the trailing window still for a while (at 0.15 rad/s
    the first 4 samples, along a ramp the first 0.25 s): those samples are not at rest, so
    the bias stays the true bias through the turn and after it (no noise: to 1e-7 rad/s)."""
    true = np.array([0.02, -0.01, 0.005])
    acc, gyr = _rest_then_turn(onset, true)
    est = RestBiasEstimator(1, window=100, gyr_std=0.03, acc_std=0.3, tau=200.0, bias_max=0.1)
    rest, bias = est.update(acc, gyr)
    onset_k = 400
    assert rest[onset_k:onset_k + 4].all()  # the trailing window cannot tell yet ...
    started = est.confirmed[0] > 0
    assert started and np.abs(bias[198:, 0] - true).max() < 1e-7  # ... the bias can
    assert est.confirmed[0] > 400  # rest after the turn was used too


def test_bias_update_waits_until_every_window_around_a_sample_is_still() -> None:
    """Bias of sample k uses samples up to k - window + 1, each only once every window holding
    it was still: a one-sample spike in a rest never enters, and the bias holds from the spike
    until the samples a full window after it are confirmed."""
    true = np.array([0.02, -0.01, 0.005])
    acc, gyr = _rest_then_turn("step", true, rest_s=10.0, turn_s=0.0)
    w, spike = 100, 500
    gyr[spike, 0, 1] += 0.5  # a knock: 0.5 rad/s for one sample
    est = RestBiasEstimator(1, window=w, gyr_std=0.03, acc_std=0.3, tau=200.0, bias_max=0.1)
    parts = [est.update(acc[i:i + 1], gyr[i:i + 1]) for i in range(len(gyr))]  # live
    rest = np.concatenate([p[0] for p in parts])[:, 0]
    bias = np.concatenate([p[1] for p in parts])[:, 0]
    assert not rest[:w - 1].any() and rest[w - 1:spike].all()
    assert (bias[:2 * w - 2] == 0).all() and np.abs(bias[2 * w - 2:] - true).max() < 1e-7
    assert not rest[spike:spike + w].any() and rest[spike + w:].all()
    # confirmations start at sample 2w - 2, stop at the spike (sample spike - w + 1 would
    # need the window ending at the spike) and resume for sample spike + w at spike + 2w - 1
    assert est.confirmed[0] == len(gyr) - (2 * w - 2) - (2 * w - 1)


def test_a_steady_turn_slower_than_the_thresholds_is_not_rest() -> None:
    """0.08 rad/s about x: gyro std 0 and acc std 0.23 m/s^2 over 1 s look still; the gyro
    mean above bias_max (0.05 rad/s here) says it is a turn, so it never enters the bias."""
    acc, gyr = _rest_then_turn("step", np.zeros(3), rest_s=3.0, turn_s=6.0, step_rad_s=0.08)
    est = RestBiasEstimator(1, window=100, gyr_std=0.03, acc_std=0.3, tau=200.0, bias_max=0.05)
    rest, bias = est.update(acc, gyr)
    assert not rest[400:900].any() and np.abs(bias).max() < 1e-9


@pytest.mark.parametrize("params", [{}, {"remap": {"shank": "x,-z,y"}, "cutoff_hz": 8.0}])
def test_saturated_samples_pass_as_data_with_their_flag(params: dict) -> None:
    data = _frames(6.0, 3)
    data["acc"][350, 0] = [0.0, 0.0, 16.0 * 9.80665]  # a tap at the range, flagged by sync
    data["flags"][350, 0] = FrameFlag.SATURATED
    plain = data.copy()
    plain["flags"][350, 0] = 0
    out = _run(Filter.create(**params), data, 10)
    ref = _run(Filter.create(**params), plain, 10)
    assert out["flags"][350, 0] & FrameFlag.SATURATED
    np.testing.assert_array_equal(out["flags"] & ~np.uint8(FrameFlag.SATURATED), ref["flags"])
    np.testing.assert_array_equal(out["acc"], ref["acc"])
    np.testing.assert_array_equal(out["gyr"], ref["gyr"])
    assert np.isfinite(out["acc"][350]).all()


def test_remap_rotates_into_segment_frame() -> None:
    data = np.zeros(3, frame_dtype(2))
    data["acc"][:] = [1.0, 2.0, 3.0]
    data["gyr"][:] = [0.1, 0.2, 0.3]
    node = Filter.create(remap={"shank": "x,-z,y"}, bias=False)
    out = _run(node, data, 3)
    np.testing.assert_allclose(out["acc"][:, 1], [[1.0, -3.0, 2.0]] * 3, atol=1e-6)
    np.testing.assert_allclose(out["gyr"][:, 1], [[0.1, -0.3, 0.2]] * 3, atol=1e-6)
    np.testing.assert_allclose(out["acc"][:, 0], [[1.0, 2.0, 3.0]] * 3)  # thigh untouched
    assert node.emitted[0].info.meta["frames"] == ["sensor", "segment"]
    # the same rotation written as a quaternion (90 deg about x) and as a matrix
    s = np.sqrt(0.5)
    r_str = rotation_from_spec("x,-z,y")
    np.testing.assert_allclose(rotation_from_spec([s, s, 0.0, 0.0]), r_str, atol=1e-12)
    np.testing.assert_allclose(rotation_from_spec(r_str.tolist()), r_str)


@pytest.mark.parametrize("spec,match", [("x,y", "three sensor axes"), ("x,x,y", "proper rotation"),
                                        ("x,y,-z", "proper rotation"), ([1.0, 1.0, 0, 0], "norm"),
                                        ([1, 2], "axis string")])
def test_bad_remap_specs_are_refused(spec, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Filter.create(remap={"thigh": spec})


def test_remap_of_unknown_imu_names_the_imus() -> None:
    node = Filter.create(remap={"pelvis": "x,y,z"})
    with pytest.raises(ConfigError, match="pelvis"):
        _run(node, np.zeros(2, frame_dtype(2)), 2)


def test_lowpass_matches_scipy_and_attenuates() -> None:
    n = 600
    t = np.arange(n) / RATE
    data = np.zeros(n, frame_dtype(2))
    slow, fast = np.sin(2 * np.pi * 0.5 * t), 0.5 * np.sin(2 * np.pi * 30.0 * t)
    data["acc"][:, 0, 0] = 3.0 + slow + fast
    node = Filter.create(bias=False, cutoff_hz=5.0, order=3)
    out = _run(node, data, 13)
    sos = butter(3, 5.0, fs=RATE, output="sos")
    x = data["acc"][:, 0, 0].astype(np.float64)
    ref, _ = sosfilt(sos, x, zi=sosfilt_zi(sos) * x[0])
    np.testing.assert_allclose(out["acc"][:, 0, 0], ref, atol=1e-5)
    x_slow = 3.0 + slow
    ref_slow, _ = sosfilt(sos, x_slow, zi=sosfilt_zi(sos) * x_slow[0])
    residual = out["acc"][100:, 0, 0] - ref_slow[100:]
    assert np.abs(residual).max() < 0.01  # the 30 Hz component (0.5 m/s^2) is filtered out


def test_end_of_stream_before_any_frame_is_not_an_error():
    node = Filter.create("filter")
    node.on_eos()
    node.teardown()
    assert node.emitted == []
