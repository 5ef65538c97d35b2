"""Filter node: block-size independence, gyro bias at rest, axis remapping, low-pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt, sosfilt_zi

from nodes.filter import Filter, rotation_from_spec
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.streams import FrameFlag, frame_dtype, frame_info
from pipeline.runtime.testing import make_block

RATE = 100.0
INFO = frame_info("sync/imu.frame", ["thigh", "shank"], RATE)


def _frames(seconds: float, seed: int) -> np.ndarray:
    """Two IMUs: rest for 3 s, then motion; gyro bias per sensor; white noise; a NaN stretch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n, frame_dtype(2))
    out["t_host"] = 10**12 + np.arange(n) * 10_000_000
    moving = (t >= 3.0)[:, None, None]
    motion = np.sin(2 * np.pi * 1.3 * t)[:, None, None] * np.array([[1.0, 0.5, -0.3]])
    bias = np.array([[0.04, -0.03, 0.02], [-0.05, 0.01, 0.03]])
    out["gyr"] = bias + moving * motion + rng.normal(0, 0.012, (n, 2, 3))
    out["acc"] = np.array([0.0, 0.0, 9.81]) + moving * 2 * motion + rng.normal(0, 0.05, (n, 2, 3))
    out["acc"][400:410, 1] = np.nan  # a MISSING stretch on the shank
    out["gyr"][400:410, 1] = np.nan
    out["flags"][400:410, 1] = FrameFlag.MISSING
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
    """Running window sums restart every EPOCH samples; rest flags and bias must not depend
    on how the samples are split (one at a time, live, or all at once), NaN stretches included."""
    from nodes.filter.gyro_bias import EPOCH, RestBiasEstimator
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
        est = RestBiasEstimator(2, window=100, gyr_std=0.03, acc_std=0.3, tau=200.0)
        parts = [est.update(acc[i:i + size], gyr[i:i + size]) for i in range(0, n, size)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    rest, bias = run(n)
    assert rest[1200:1600].all() and rest[EPOCH + 200:EPOCH + 500, 0].all()
    assert not rest[EPOCH + 100:EPOCH + 209, 1].any()  # NaN within the window: never at rest
    assert not rest[:99].any() and rest.mean() < 0.5
    for size in (1, 13, 1000):
        r, b = run(size)
        np.testing.assert_array_equal(r, rest)
        np.testing.assert_array_equal(b, bias)


def test_bias_removed_at_rest_and_rest_flagged() -> None:
    data = _frames(8.0, 2)
    node = Filter.create()
    out = _run(node, data, 10)
    rest = (out["flags"] & FrameFlag.AT_REST) > 0
    t = np.arange(len(out)) / RATE
    assert rest[(t > 1.05) & (t < 2.95)].all()  # after one window of rest
    assert not rest[(t > 3.5)].any()  # moving
    assert not rest[t < 0.98].any()  # window not yet full
    corrected = out["gyr"][(t > 2.0) & (t < 3.0)].astype(np.float64)
    assert np.abs(corrected.mean(axis=0)).max() < 0.004  # was up to 0.05 rad/s
    np.testing.assert_allclose(node._bias.bias, [[0.04, -0.03, 0.02], [-0.05, 0.01, 0.03]],
                               atol=0.004)
    # the bias holds during motion: corrected motion equals the true motion plus noise
    moving = t > 4.0
    motion = np.sin(2 * np.pi * 1.3 * t[moving])[:, None] * np.array([1.0, 0.5, -0.3])
    assert np.abs((out["gyr"][moving, 0] - motion).mean(axis=0)).max() < 0.005
    assert np.isnan(out["gyr"][400:410, 1]).all()  # NaN stays NaN, never a number
    assert (out["flags"][400:410, 1] & FrameFlag.MISSING).all()


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
