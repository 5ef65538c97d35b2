"""Sync node: clock mapping, multi-rate alignment, gaps, invalid samples, block-size independence."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from nodes.sync import Sync
from nodes.sync.sensor_track import G0
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import RAW_IMU_DTYPE, FrameFlag, raw_imu_info
from pipeline.runtime.testing import make_block

HOST0 = 5_000_000_000_000  # ns, host monotonic clock at the start of the simulated recording
F_SIG = 0.7  # Hz, test signal frequency


def _signal(t_s: np.ndarray, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """acc (m/s^2) and gyr (rad/s), (n, 3), smooth functions of true host time in s."""
    base = np.sin(2 * np.pi * F_SIG * t_s[:, None] + phase + np.array([0.0, 1.0, 2.0]))
    return 9.81 + 2.0 * base, 1.5 * base


def _sensor(name: str, rate_hz: float, seconds: float, *, seed: int, drift: float = 0.0,
            sensor_offset_ns: int = 0, start_s: float = 0.0, jitter_s: float = 0.0,
            phase: float = 0.0) -> np.ndarray:
    """imu.raw samples of one sensor; acc/gyr follow _signal at the true capture time."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t_sensor = (np.arange(n) * 1e9 / rate_hz).astype(np.int64) + sensor_offset_ns
    true_s = start_s + np.arange(n) / rate_hz * (1 + drift)
    raw = np.zeros(n, RAW_IMU_DTYPE)
    raw["t_sensor"] = t_sensor
    raw["t_host"] = HOST0 + np.rint((true_s + rng.exponential(jitter_s, n) if jitter_s else true_s)
                                    * 1e9).astype(np.int64)
    raw["counter"] = np.arange(n)
    raw["acc"], raw["gyr"] = _signal(true_s, phase)
    raw["mag"] = np.nan
    return raw


def _feed(node: Sync, streams: dict[str, tuple[np.ndarray, float]], block: int | None) -> None:
    """Hand each sensor's samples to the node: in blocks of ``block`` interleaved by t_host,
    or (block=None) each sensor's whole recording in one message, one sensor after the other."""
    infos = {n: raw_imu_info(f"drv_{n}/imu.raw:{n}", n, rate) for n, (_, rate) in streams.items()}
    if block is None:
        for n, (raw, _) in streams.items():
            node.on_block("raw", make_block(infos[n], raw))
    else:
        chunks = []  # (arrival time, sensor, samples): a chunk arrives with its last sample
        for n, (raw, _) in streams.items():
            arrival = np.maximum.accumulate(raw["t_host"])  # transport keeps the order
            chunks += [(arrival[min(i + block, len(raw)) - 1], n, raw[i:i + block])
                       for i in range(0, len(raw), block)]
        for _, n, chunk in sorted(chunks, key=lambda c: (c[0], c[1])):
            node.on_block("raw", make_block(infos[n], chunk))
    node.on_eos()


def _frames(node: Sync) -> np.ndarray:
    return np.concatenate([b.data for b in node.emitted])


def _two_sensors(seconds: float = 6.0) -> dict[str, tuple[np.ndarray, float]]:
    return {
        "thigh": (_sensor("thigh", 100.0, seconds, seed=1, drift=50e-6, sensor_offset_ns=3 * 10**9,
                          jitter_s=0.003), 100.0),
        "shank": (_sensor("shank", 60.0, seconds, seed=2, drift=-40e-6, sensor_offset_ns=10**6,
                          start_s=0.013, jitter_s=0.004, phase=0.5), 60.0),
    }


def test_output_does_not_depend_on_block_size() -> None:
    streams = _two_sensors(4.0)
    ref = None
    for block in (None, 1, 5, 64):
        node = Sync.create(imus=["thigh", "shank"], rate_hz=100.0, latency_s=30.0)
        _feed(node, streams, block)
        out = _frames(node)
        if ref is None:
            ref = out
            assert len(ref) > 350
        else:
            np.testing.assert_array_equal(out["t_host"], ref["t_host"])
            np.testing.assert_array_equal(out["flags"], ref["flags"])
            np.testing.assert_array_equal(out["acc"], ref["acc"])  # NaN == NaN here
            np.testing.assert_array_equal(out["gyr"], ref["gyr"])


def test_live_blocks_of_one_give_one_frame_per_message() -> None:
    streams = {n: (_sensor(n, 100.0, 2.0, seed=s, jitter_s=0.001), 100.0)
               for s, n in enumerate(("thigh", "shank"))}
    node = Sync.create(imus=["thigh", "shank"], rate_hz=100.0, latency_s=30.0)
    _feed(node, streams, 1)
    sizes = [b.n for b in node.emitted[:-1]]  # the last message is the flush at end of stream
    assert np.mean(sizes) < 1.1 and sum(sizes) > 190


def test_multi_rate_and_drifting_jittered_clocks_are_aligned() -> None:
    """60 Hz and 100 Hz sensors with 50 ppm drift, offsets and ms jitter land on one grid."""
    streams = _two_sensors(8.0)
    node = Sync.create(imus=["thigh", "shank"], rate_hz=100.0, latency_s=30.0)
    _feed(node, streams, 3)
    out = _frames(node)
    assert node.emitted[0].info.meta["imus"] == ["thigh", "shank"]
    assert np.all(np.diff(out["t_host"]) == 10_000_000)
    true_s = (out["t_host"] - HOST0) / 1e9
    settled = true_s > 2.0  # clock fits converged
    for i, phase in enumerate((0.0, 0.5)):
        ok = settled & (out["flags"][:, i] == FrameFlag.OK)
        assert ok.sum() > 500
        acc, gyr = _signal(true_s[ok], phase)
        # 1 ms of timing error moves acc by <= 2 * 2pi * 0.7 Hz * 1e-3 s = 0.0088 m/s^2;
        # linear interpolation of the 60 Hz sensor adds at most ~0.003
        assert np.abs(out["acc"][ok, i] - acc).max() < 0.012
        assert np.abs(out["gyr"][ok, i] - gyr).max() < 0.009
    # the shank starts 13 ms later: its first frame is MISSING, never a made-up number
    assert out["flags"][0, 1] == FrameFlag.MISSING and np.isnan(out["acc"][0, 1]).all()


def test_short_gaps_interpolated_long_gaps_missing() -> None:
    raw = _sensor("thigh", 100.0, 5.0, seed=3)
    keep = np.ones(len(raw), bool)
    keep[100:105] = False  # 60 ms without samples: <= max_gap_s, interpolated
    keep[300:330] = False  # 310 ms without samples: > max_gap_s, missing
    node = Sync.create(imus=["thigh"], rate_hz=100.0, max_gap_s=0.1, latency_s=30.0,
                       dejitter=False)
    _feed(node, {"thigh": (raw[keep], 100.0)}, 7)
    out = _frames(node)
    t_ms = (out["t_host"] - HOST0) // 1_000_000
    flags = out["flags"][:, 0]
    interp = t_ms[(flags & FrameFlag.INTERPOLATED) > 0]
    np.testing.assert_array_equal(interp, np.arange(1000, 1050, 10))
    assert not np.isnan(out["acc"][(flags & FrameFlag.INTERPOLATED) > 0]).any()
    missing = t_ms[flags == FrameFlag.MISSING]
    np.testing.assert_array_equal(missing, np.arange(3000, 3300, 10))
    assert np.isnan(out["acc"][flags == FrameFlag.MISSING]).all()
    assert np.isnan(out["gyr"][flags == FrameFlag.MISSING]).all()
    assert node.stats.extra["missing"] == 30 and node.stats.extra["interpolated"] == 5


@pytest.mark.parametrize("block", [1, 10])
def test_nan_and_absurd_samples_are_flagged_invalid_never_numbers(block: int) -> None:
    raw = _sensor("thigh", 100.0, 2.0, seed=4)
    raw["acc"][50, 1] = np.nan
    raw["acc"][80] = [0.0, 0.0, 33 * G0]  # beyond twice the 16 g0 range: not a reading
    raw["gyr"][120] = [0.0, 36.0, 0.0]  # beyond 35 rad/s
    raw["gyr"][150, 2] = np.inf
    node = Sync.create(imus=["thigh"], rate_hz=100.0, dejitter=False, latency_s=30.0)
    _feed(node, {"thigh": (raw, 100.0)}, block)
    out = _frames(node)
    t_idx = (out["t_host"] - HOST0) // 10_000_000
    bad = out["flags"][:, 0] == FrameFlag.INVALID
    np.testing.assert_array_equal(t_idx[bad], [50, 80, 120, 150])
    assert np.isnan(out["acc"][bad]).all() and np.isnan(out["gyr"][bad]).all()
    assert np.isfinite(out["acc"][~bad]).all() and not out["flags"][~bad].any()
    assert node.stats.extra["invalid"] == 4 and node.stats.extra["saturated"] == 0


@pytest.mark.parametrize("block", [1, 10])
def test_acc_at_the_range_is_kept_flagged_saturated_and_logged_once(block: int, caplog) -> None:
    """A tap that reaches the 16 g0 range on one axis (as the BROAD tapping trial does) is a
    reading: kept, flagged SATURATED, logged the first time; frames between samples too."""
    raw = _sensor("thigh", 100.0, 2.0, seed=4)
    raw["acc"][80] = [1.0, -2.0, 16.2 * G0]  # a tap: one axis at (above) the range
    raw["acc"][81] = [-16.0 * G0, 3.0, 9.0]  # the other sign, 16.0 g0 (>= 0.999 x range)
    raw["acc"][90] = [15.9 * G0, 0.0, 0.0]  # under 0.999 x range: an ordinary sample
    raw["acc"][130] = [0.0, 0.0, 16.5 * G0]
    node = Sync.create(imus=["thigh"], rate_hz=100.0, dejitter=False, latency_s=30.0)
    with caplog.at_level("INFO"):
        _feed(node, {"thigh": (raw, 100.0)}, block)
    out = _frames(node)
    t_idx = (out["t_host"] - HOST0) // 10_000_000
    sat = out["flags"][:, 0] == FrameFlag.SATURATED
    np.testing.assert_array_equal(t_idx[sat], [80, 81, 130])
    assert not out["flags"][~sat].any()
    np.testing.assert_array_equal(out["acc"][sat, 0], raw["acc"][[80, 81, 130]])  # kept
    np.testing.assert_array_equal(out["gyr"][sat, 0], raw["gyr"][[80, 81, 130]])
    assert node.stats.extra["saturated"] == 3 and node.stats.extra["invalid"] == 0
    logged = [r for r in caplog.records if "SATURATED" in r.getMessage()]
    assert len(logged) == 1 and "thigh" in logged[0].getMessage()
    assert logged[0].levelname == "WARNING"
    # a frame between a saturated sample and the next is interpolated and flagged too
    half = Sync.create(imus=["thigh"], rate_hz=100.0, dejitter=False, latency_s=30.0)
    shifted = raw.copy()
    shifted["t_host"] += 5_000_000  # samples half way between the frame times
    _feed(half, {"thigh": (shifted, 100.0)}, block)
    out = _frames(half)
    t_idx = (out["t_host"] - HOST0) // 10_000_000
    sat = out["flags"][:, 0] == FrameFlag.SATURATED
    np.testing.assert_array_equal(t_idx[sat], [80, 81, 82, 130, 131])  # sample 80 at 805 ms
    assert np.isfinite(out["acc"][sat]).all()


def _feed_with_meta(node: Sync, raw: np.ndarray, block: int, **meta: object) -> np.ndarray:
    """One sensor 'thigh' at 100 Hz whose raw stream info carries ``meta``; its frames."""
    info = raw_imu_info("drv/imu.raw:thigh", "thigh", 100.0, **meta)
    for i in range(0, len(raw), block):
        node.on_block("raw", make_block(info, raw[i:i + block]))
    node.on_eos()
    return _frames(node)


@pytest.mark.parametrize("meta", [{"acc_range_g": 8}, {"acc_range": 8 * G0}, {}])
def test_saturation_limit_follows_the_range_in_the_stream_info(meta: dict, caplog) -> None:
    raw = _sensor("thigh", 100.0, 2.0, seed=4)
    raw["acc"][40] = [0.0, 8.0 * G0, 0.0]  # at an 8 g0 range
    raw["acc"][60] = [0.0, 0.0, -12.0 * G0]  # beyond an 8 g0 range, within twice it
    raw["acc"][80] = [17.0 * G0, 0.0, 0.0]  # beyond twice 8 g0; at a 16 g0 range
    node = Sync.create(imus=["thigh"], rate_hz=100.0, dejitter=False, latency_s=30.0)
    with caplog.at_level("INFO"):
        out = _feed_with_meta(node, raw, 7, **meta)
    t_idx = (out["t_host"] - HOST0) // 10_000_000
    flags = dict(zip(t_idx.tolist(), out["flags"][:, 0].tolist()))
    if meta:  # the sensor says 8 g0
        assert (flags[40], flags[60], flags[80]) == (FrameFlag.SATURATED, FrameFlag.SATURATED,
                                                     FrameFlag.INVALID)
        assert any("acc range 8 g0" in r.getMessage() for r in caplog.records)
    else:  # the default range, 16 g0 (acc_max)
        assert (flags[40], flags[60], flags[80]) == (0, 0, FrameFlag.SATURATED)
    assert sum(f != 0 for f in flags.values()) == (3 if meta else 1)


def test_a_bad_range_in_the_stream_info_keeps_the_default(caplog) -> None:
    raw = _sensor("thigh", 100.0, 1.0, seed=4)
    raw["acc"][40] = [0.0, 16.0 * G0, 0.0]
    node = Sync.create(imus=["thigh"], rate_hz=100.0, dejitter=False, latency_s=30.0)
    out = _feed_with_meta(node, raw, 10, acc_range_g=-4)
    assert any("acc_range_g" in r.getMessage() for r in caplog.records)
    assert out["flags"][40, 0] == FrameFlag.SATURATED


def test_stalled_sensor_does_not_hold_frames_back_past_latency() -> None:
    a = _sensor("thigh", 100.0, 2.0, seed=5)
    b = _sensor("shank", 100.0, 1.0, seed=6)  # shank stops after 1 s
    node = Sync.create(imus=["thigh", "shank"], rate_hz=100.0, latency_s=0.05, dejitter=False)
    ia, ib = raw_imu_info("a/imu.raw:thigh", "thigh", 100.0), raw_imu_info("b/imu.raw:shank",
                                                                            "shank", 100.0)
    node.on_block("raw", make_block(ib, b))
    node.on_block("raw", make_block(ia, a[:150]))
    first = _frames(node)
    assert (first["t_host"] - HOST0).max() <= 990_000_000  # waits for the shank
    time.sleep(0.08)  # longer than latency_s: the shank counts as stalled now
    node.on_block("raw", make_block(ia, a[150:]))
    out = _frames(node)
    after = (out["t_host"] - HOST0) > 1_000_000_000
    assert (out["t_host"] - HOST0).max() >= 1_990_000_000
    assert (out["flags"][after, 1] == FrameFlag.MISSING).all()
    assert (out["flags"][after, 0] == FrameFlag.OK).all()


def test_sensors_sent_in_turn_in_large_blocks_are_not_stalled() -> None:
    """Offline replay sends each sensor's next seconds in turn: the others then lag by a block
    (and the first round by everything), even when the graph is slower than latency_s."""
    streams = {n: _sensor(n, 100.0, 12.0, seed=s) for s, n in enumerate(("a", "b", "c"))}
    node = Sync.create(imus=list(streams), rate_hz=100.0, latency_s=0.01, dejitter=False)
    infos = {n: raw_imu_info(f"rp/imu.raw:{n}", n, 100.0) for n in streams}
    for k in range(0, 1200, 400):  # 4 s blocks, a slow graph: 30 ms between messages
        for n, raw in streams.items():
            node.on_block("raw", make_block(infos[n], raw[k:k + 400]))
            time.sleep(0.03)
    node.on_eos()
    out = _frames(node)
    assert len(out) == 1200 and (out["flags"] == FrameFlag.OK).all()


def test_imus_from_chain_file_and_unknown_sensors_ignored() -> None:
    chain = Path(__file__).resolve().parents[1] / "configs" / "chains" / "knee.yaml"
    node = Sync.create(context=GraphContext(chain_file=chain), latency_s=30.0)
    assert node.output_info("imu.frame").meta["imus"] == ["thigh", "shank"]
    raw = _sensor("pelvis", 100.0, 0.5, seed=7)
    node.on_block("raw", make_block(raw_imu_info("p/imu.raw:pelvis", "pelvis", 100.0), raw))
    assert node.emitted == [] and node.stats.extra["ignored_sensors"] == ["pelvis"]


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="imus"):
        Sync.create()
    with pytest.raises(ConfigError, match="rate_hz"):
        Sync.create(imus=["a"], rate_hz=0.0)


def test_one_sample_messages_give_the_same_frames_whether_or_not_buffers_are_flushed() -> None:
    """Live samples wait as Python tuples until an array operation needs them; frames taken
    between such operations (arrays and pending samples mixed) equal the block path's."""
    from nodes.sync.sensor_track import Limits, SensorTrack
    rng = np.random.default_rng(4)
    n = 700
    t = np.cumsum(rng.integers(8_000_000, 12_000_000, n)).astype(np.int64)
    keep = rng.random(n) > 0.05  # lost samples
    raw = np.zeros(int(keep.sum()), RAW_IMU_DTYPE)
    raw["t_sensor"], raw["counter"], raw["t_host"] = -1, -1, t[keep]
    raw["acc"] = rng.normal(size=(n, 3))[keep]
    raw["gyr"][rng.random(len(raw)) < 0.02] = np.nan  # invalid samples
    whole = SensorTrack("w", max_gap_ns=25_000_000, dejitter=False, limits=Limits())
    whole.add(raw, 100.0, 0)
    grid = np.arange(t[0] - 20_000_000, t[-1], 10_000_000, dtype=np.int64)
    ref_acc, ref_gyr, ref_flags = whole.resample(grid)
    one = SensorTrack("o", max_gap_ns=25_000_000, dejitter=False, limits=Limits())
    out, j = [], 0
    for k, g in enumerate(grid):
        while j < len(raw) and raw["t_host"][j] <= g + 30_000_000:
            one.add(raw[j:j + 1], 100.0, 0)
            j += 1
        if k % 7 == 3:
            assert len(one.t)  # an array operation: pending samples move into the arrays
        out.append(one.sample_at(int(g)))
        one.trim_before(int(g) + 10_000_000)
    vals = np.array([v for v, _ in out])
    np.testing.assert_array_equal([f for _, f in out], ref_flags)
    np.testing.assert_array_equal(vals[:, :3], ref_acc)
    np.testing.assert_array_equal(vals[:, 3:], ref_gyr)


def test_frame_arrival_names_the_message_that_completed_each_frame() -> None:
    streams = {n: (_sensor(n, 100.0, 2.0, seed=s, jitter_s=0.001), 100.0)
               for s, n in enumerate(("thigh", "shank"))}
    infos = {n: raw_imu_info(f"drv_{n}/imu.raw:{n}", n, 100.0) for n in streams}
    plain = Sync.create("sync", imus=["thigh", "shank"], rate_hz=100.0, latency_s=30.0)
    node = Sync.create("sync", imus=["thigh", "shank"], rate_hz=100.0, latency_s=30.0,
                       arrival=True)
    messages = sorted((int(raw["t_host"][i]), n, i) for n, (raw, _) in streams.items()
                      for i in range(len(raw)))
    expected = []  # (frame t_host, t_host of the message in whose on_block it went out)
    for t, n, i in messages:
        before = len(node.emitted)
        block = make_block(infos[n], streams[n][0][i:i + 1], t_host=t)
        node.on_block("raw", block)
        plain.on_block("raw", block)
        expected += [(int(g), t) for b in node.emitted[before:] if b.topic == "sync/imu.frame"
                     for g in b.data["t_host"]]
    node.on_eos()
    plain.on_eos()
    frames = [b for b in node.emitted if b.topic == "sync/imu.frame"]
    arrivals = np.concatenate([b.data for b in node.emitted if b.topic == "sync/frame.arrival"])
    assert np.concatenate([b.data for b in frames]).tobytes() == _frames(plain).tobytes()
    assert len(expected) > 150 and len(arrivals) == sum(b.n for b in frames)
    assert [tuple(r) for r in arrivals[:len(expected)].tolist()] == expected
    assert (arrivals["t_arrival"][len(expected):] == -1).all()  # flushed by the end of stream
    for i, b in enumerate(node.emitted):  # each arrival goes out just before its frames
        if b.topic == "sync/frame.arrival":
            nxt = node.emitted[i + 1]
            assert nxt.topic == "sync/imu.frame" and nxt.data["t_host"].tolist() == \
                b.data["t_host"].tolist()
