"""Replay: original infos and stamps, speed, start/end, filter, restamp, loop, torn files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from drivers.replay import Replay
from pipeline.recording.session_reader import SessionReader, read_streams
from tests.test_recorder import REPO, synth_session


def _play(node: Replay, max_polls: int = 100_000) -> None:
    node.on_start()
    for _ in range(max_polls):
        if not node.poll(0.05):
            break
    node.on_stop()


def _samples(node: Replay, stream: str) -> np.ndarray:
    return np.concatenate([b.data for b in node.emitted if b.info.stream == stream])


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "s.mcap"
    return path, synth_session(path, 2.0, block=2)


def test_replay_keeps_infos_samples_and_stamps(session):
    path, truth = session
    node = Replay.create("rp", path=str(path), speed=0, merge_s=0)
    _play(node)
    assert {b.info.stream for b in node.emitted} == {"rp/imu.raw:left", "rp/imu.raw:right"}
    assert len(node.emitted) == 200  # as recorded: 100 blocks of 2 samples per sensor
    for src in ("left", "right"):
        got = _samples(node, f"rp/imu.raw:{src}")
        assert got.tobytes() == truth[f"drv/imu.raw:{src}"].tobytes()
        blocks = [b for b in node.emitted if b.info.source == src]
        assert [b.t_host for b in blocks] == list(truth[f"drv/imu.raw:{src}"]["t_host"][::2])
    ts = [b.t_host for b in node.emitted]
    assert ts == sorted(ts)  # interleaved in time across streams


def test_as_fast_as_possible_merges_blocks_without_changing_samples(session):
    path, truth = session
    node = Replay.create("rp", path=str(path), speed=0)  # merge_s auto: 10 s at speed 0
    _play(node)
    assert len(node.emitted) <= 6
    assert _samples(node, "rp/imu.raw:left").tobytes() == truth["drv/imu.raw:left"].tobytes()


def test_start_end_and_topic_filter(session):
    path, truth = session
    node = Replay.create("rp", path=str(path), speed=0, start_s=0.5, end_s=1.5,
                         topics=["*:right"])
    _play(node)
    assert {b.info.source for b in node.emitted} == {"right"}
    got = _samples(node, "rp/imu.raw:right")
    assert len(got) == 100 and got["counter"][0] == 50
    assert got.tobytes() == truth["drv/imu.raw:right"][50:150].tobytes()


def test_restamp_shifts_host_time_to_now(session):
    path, truth = session
    before = time.monotonic_ns()
    node = Replay.create("rp", path=str(path), speed=0, restamp=True)
    _play(node)
    got = _samples(node, "rp/imu.raw:left")
    orig = truth["drv/imu.raw:left"]
    shift = int(got["t_host"][0]) - int(orig["t_host"][0])
    assert before - 1e9 < got["t_host"][0] < time.monotonic_ns()
    np.testing.assert_array_equal(got["t_host"] - orig["t_host"], shift)
    np.testing.assert_array_equal(got["t_sensor"], orig["t_sensor"])  # device clock kept
    assert node.emitted[0].t_host == got["t_host"][0]


def test_real_time_pacing(tmp_path: Path):
    path = tmp_path / "short.mcap"
    synth_session(path, 0.6, sensors=("a",))
    node = Replay.create("rp", path=str(path), speed=1.0)
    t0 = time.monotonic()
    _play(node)
    elapsed = time.monotonic() - t0
    assert len(node.emitted) == 60
    # never faster than the recording (0.6 s less one block): holds under any load; the upper
    # bound only catches a replay far slower than real time, with a 3x margin for a shared CI
    # machine
    assert 0.58 <= elapsed < 3 * 0.6


def test_loop_flags_a_gap_at_each_restart(tmp_path: Path):
    path = tmp_path / "short.mcap"
    synth_session(path, 0.1, sensors=("a",))
    node = Replay.create("rp", path=str(path), speed=0, loop=True, merge_s=0)
    node.on_start()
    while len(node.emitted) < 25:
        assert node.poll(0.01)
    gaps = [i for i, b in enumerate(node.emitted) if b.header.flags & 1]
    assert gaps[:2] == [10, 20]


def test_replays_a_torn_file_up_to_its_last_complete_chunk(tmp_path: Path):
    path = tmp_path / "s.mcap"
    synth_session(path, 5.0, sensors=("a",), chunk_bytes=20_000)
    with SessionReader(path) as r:
        per_chunk = [sum(len(x) for x in runs) for runs in r.runs()]
    assert len(per_chunk) >= 2
    data = path.read_bytes()
    torn = tmp_path / "torn.mcap"
    with open(path, "rb") as f:  # chunk extents from the mcap library's summary
        chunks = sorted(make_reader(f).get_summary().chunk_indexes,
                        key=lambda c: c.chunk_start_offset)
    assert len(chunks) == len(per_chunk)
    cut = int(len(data) * 0.7)
    complete = sum(1 for c in chunks if c.chunk_start_offset + c.chunk_length <= cut)
    assert 0 < complete < len(chunks)
    torn.write_bytes(data[:cut])
    node = Replay.create("rp", path=str(torn), speed=0, merge_s=0)
    _play(node)
    counters = _samples(node, "rp/imu.raw:a")["counter"]
    assert len(counters) == sum(per_chunk[:complete])  # every complete chunk, nothing more
    np.testing.assert_array_equal(counters, np.arange(len(counters)))


def test_record_command_records_every_source_output(write_graph, tmp_path: Path):
    src = tmp_path / "src.mcap"
    truth = synth_session(src, 1.0)
    graph = write_graph(f"""
        version: 1
        nodes:
          - id: replay
            kind: drivers.replay.Replay
            params: {{path: "{src}", speed: 0}}
            outputs: [imu.raw]
          - id: relay
            kind: nodes.relay.Relay
            inputs: {{in: replay/imu.raw}}
        """)
    out = tmp_path / "rec-{time}.mcap"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "record", str(graph), "-o", str(out),
                           "--topics", "relay/*", "--duration", "60"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("rec-*Z.mcap")
    streams = read_streams(path)
    # the relay names both of its streams relay/out (one channel per distinct info)
    assert set(streams) == {"replay/imu.raw:left", "replay/imu.raw:right", "relay/out"}
    assert streams["replay/imu.raw:left"].data.tobytes() == truth["drv/imu.raw:left"].tobytes()
    assert not list(tmp_path.glob(".graph.record-*"))  # the generated graph is removed


def test_missing_or_foreign_file_is_named(tmp_path: Path):
    from pipeline.recording.session_reader import SessionFileError
    from pipeline.runtime.errors import ConfigError
    with pytest.raises(SessionFileError, match=f"session '{tmp_path / 'nope.mcap'}': cannot open"):
        Replay.create("rp", path=str(tmp_path / "nope.mcap"))
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(SessionFileError, match="not an MCAP file.*imuflow import"):
        Replay.create("rp", path=str(csv))
    with pytest.raises(ConfigError, match="end_s must be greater than start_s"):
        Replay.create("rp", path=str(csv), start_s=2.0, end_s=1.0)


@pytest.mark.slow
def test_ctrl_c_finishes_the_recording_cleanly(write_graph, tmp_path: Path):
    import signal

    src = tmp_path / "src.mcap"
    synth_session(src, 5.0)
    graph = write_graph(f"""
        version: 1
        nodes:
          - id: replay
            kind: drivers.replay.Replay
            params: {{path: "{src}", speed: 1, loop: true}}
            outputs: [imu.raw]
        """)
    out = tmp_path / "live.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "record", str(graph), "-o",
                             str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.stat().st_size > 20_000):
            assert proc.poll() is None and time.monotonic() < deadline, "recording never grew"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with SessionReader(out) as r:
        assert sum(len(x) for runs in r.runs() for x in runs) > 0 and not r.truncated
    with open(out, "rb") as f:  # summary written: the mcap library reads its statistics
        assert make_reader(f).get_summary().statistics.message_count > 0


@pytest.mark.realdata
def test_real_broad_trial_imports_and_replays_bit_for_bit(realdata: Path, tmp_path: Path):
    from drivers.importers import import_session
    trial = realdata / "broad" / "24_disturbed_tapping_A.hdf5"
    out, streams = import_session([trial], tmp_path / "broad.mcap", block=50)
    node = Replay.create("rp", path=str(out), speed=0)
    _play(node)
    for s in streams:
        got = _samples(node, f"rp/{s.kind}:{s.name}")
        assert got.tobytes() == s.data.tobytes()
    assert {b.info.kind for b in node.emitted} == {"imu.raw", "orientation.truth"}


def _open_fds_on(path: Path) -> list[str]:
    """This process's file descriptors (from /proc/self/fd) that point at path."""
    fds = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if Path(fd.readlink()) == path.resolve():
                fds.append(fd.name)
        except OSError:  # the fd listing the directory itself is gone by now
            pass
    return fds


def test_stop_in_the_middle_releases_the_file(session):
    path, _ = session
    node = Replay.create("rp", path=str(path), speed=1.0)
    node.on_start()
    assert node.poll(0.05)
    assert _open_fds_on(path)  # the check sees the reader's descriptor while it plays
    node.on_stop()
    node.teardown()  # a suspended reader must not keep the file pinned
    assert 0 < len(node.emitted) < 400
    assert _open_fds_on(path) == []


def test_replays_a_format_v1_session_bit_for_bit(tmp_path: Path):
    """Sessions recorded before format v2 (StreamInfo JSON in every message) replay unchanged."""
    from tests.test_recorder import _write_v1_session
    path = tmp_path / "v1.mcap"
    truth = _write_v1_session(path, seconds=2.0)
    for merge_s in (0, -1):
        node = Replay.create("rp", path=str(path), speed=0, merge_s=merge_s)
        _play(node)
        assert len(node.emitted) == (400 if merge_s == 0 else 2)  # 2 s: one block per stream
        for src in ("left", "right"):
            got = _samples(node, f"rp/imu.raw:{src}")
            assert got.tobytes() == truth[f"drv/imu.raw:{src}"].tobytes()


@pytest.mark.parametrize("chunk_bytes", [1 << 22, 3000])
def test_speed0_blocks_are_whole_windows_of_one_stream(tmp_path: Path, chunk_bytes: int):
    """At speed 0 a stream's messages merge into merge_s blocks, across chunk boundaries too
    (the reader then parses a window's chunks as one)."""
    path = tmp_path / "s.mcap"
    truth = synth_session(path, 3.0, sensors=("a", "b"), chunk_bytes=chunk_bytes)
    with SessionReader(path) as r:
        assert (sum(1 for _ in r.runs()) > 6) == (chunk_bytes < 10_000)
    default = Replay.create("rp", path=str(path), speed=0)  # 10 s windows: one block each
    _play(default)
    assert [b.n for b in default.emitted] == [300] * 2
    node = Replay.create("rp", path=str(path), speed=0, merge_s=1.0)
    _play(node)
    assert [b.n for b in node.emitted] == [100] * 6  # 3 windows x 2 streams
    first = [int(b.data["t_host"][0]) for b in node.emitted]
    assert [b.t_host for b in node.emitted] == first  # the first message's header
    for s in ("a", "b"):
        assert _samples(node, f"rp/imu.raw:{s}").tobytes() == truth[f"drv/imu.raw:{s}"].tobytes()
    ts = [b.t_host for b in node.emitted]
    assert ts == sorted(ts)


def test_speed0_merging_stops_at_a_gap_across_chunks(tmp_path: Path):
    """A message flagged GAP starts a new block even when it opens a chunk."""
    from pipeline.recording.session_format import pack_array
    from pipeline.recording.session_writer import SessionWriter
    from pipeline.runtime.message import Flag
    from pipeline.runtime.streams import raw_imu_info
    from tests.test_recorder import _raw
    path = tmp_path / "gap.mcap"
    info = raw_imu_info("drv/imu.raw:a", "a", 100.0)
    data = _raw(100)
    w = SessionWriter(path, flush_s=3600.0)
    for k in range(100):
        t = int(data["t_host"][k])
        if k in (30, 50):
            w.flush()  # chunk boundary; k=50 opens its chunk with a gap
        w.write_raw(info, pack_array(info, data[k:k + 1], seq=k, t_host=t,
                                     flags=Flag.GAP if k == 50 else Flag.NONE),
                    log_time=t, publish_time=t, sequence=k)
    w.close()
    node = Replay.create("rp", path=str(path), speed=0)
    _play(node)
    assert [b.n for b in node.emitted] == [50, 50]
    assert [b.gap for b in node.emitted] == [False, True]
    assert _samples(node, "rp/imu.raw:a").tobytes() == data.tobytes()


@pytest.mark.parametrize("batch_s", [0.3, 1.0, 10.0])
def test_reader_batches_give_the_same_messages(tmp_path: Path, batch_s: float):
    """runs(batch_ns) parses a window's chunks as one; messages, headers and payloads are the
    same as chunk by chunk, for uniform chunks and for chunks mixing two record lengths."""
    from pipeline.recording.session_format import pack_array
    from pipeline.recording.session_writer import SessionWriter
    from pipeline.runtime.streams import raw_imu_info
    from tests.test_recorder import _raw
    uniform = tmp_path / "u.mcap"
    synth_session(uniform, 3.0, sensors=("a", "b", "c"), chunk_bytes=3000)
    mixed = tmp_path / "m.mcap"  # blocks of 1 and 2 samples interleaved: two record lengths
    w = SessionWriter(mixed, flush_s=3600.0, chunk_bytes=2500)
    infos = [raw_imu_info(f"drv/imu.raw:{s}", s, 100.0) for s in ("a", "b")]
    arr = _raw(300)
    for k in range(0, 300, 2):
        for j, info in enumerate(infos):
            blk = arr[k:k + 1 + j]
            t = int(blk["t_host"][0])
            w.write_raw(info, pack_array(info, blk, seq=k, t_host=t), log_time=t,
                        publish_time=t, sequence=k)
    w.close()
    def read(path: Path, batch_ns: int) -> dict[int, tuple[bytes, bytes, bytes]]:
        parts: dict[int, list] = {}
        with SessionReader(path) as r:
            for runs in r.runs(batch_ns=batch_ns):
                for run in runs:
                    parts.setdefault(run.channel.id, []).append(run)
        return {c: (b"".join(x.log_time.tobytes() for x in rs),
                    b"".join(x.header.tobytes() for x in rs),
                    b"".join(x.payload_bytes(0, len(x)).tobytes() for x in rs))
                for c, rs in parts.items()}

    for path in (uniform, mixed):
        assert read(path, int(batch_s * 1e9)) == read(path, 0)
