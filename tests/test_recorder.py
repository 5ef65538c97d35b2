"""Recorder: exact bus frames in MCAP, record-then-replay bit for bit, crash read-back, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from mcap.reader import make_reader

from nodes.recorder import Recorder
from pipeline.recording.session_format import (
    FIXED_HEADER,
    SESSION_METADATA,
    decode_message,
    pack_array,
    pack_block,
)
from pipeline.recording.session_reader import SessionReader, read_streams
from pipeline.recording.session_writer import RecordingError, SessionWriter
from pipeline.runtime.bus import Publisher, Subscriber
from pipeline.runtime.graph import load_graph
from pipeline.runtime.message import _FIXED, Flag
from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info
from pipeline.runtime.supervisor import Supervisor
from pipeline.runtime.testing import make_block

REPO = Path(__file__).resolve().parents[1]
CHAIN = REPO / "configs" / "chains" / "knee.yaml"


def _raw(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, RAW_IMU_DTYPE)
    out["t_sensor"] = rng.integers(0, 2**62, n)
    out["t_host"] = np.arange(n) * 10_000_000 + 123
    out["counter"] = np.arange(n)
    out["acc"] = rng.normal(size=(n, 3)).astype(np.float32)
    out["gyr"] = rng.normal(size=(n, 3)).astype(np.float32)
    out["mag"] = np.nan
    return out


def test_fixed_header_matches_bus_encoder():
    assert FIXED_HEADER.format == _FIXED.format


def test_stored_message_is_the_exact_bus_frames():
    """What the recorder stores equals, byte for byte, the frames a raw ZeroMQ socket received."""
    ctx = zmq.Context()
    ep = "inproc://rec-exact"
    pub = Publisher(ctx, [ep])
    sub = Subscriber(ctx, [(ep, "drv/imu.raw")])
    raw = ctx.socket(zmq.SUB)
    raw.connect(ep)
    raw.setsockopt(zmq.SUBSCRIBE, b"drv/imu.raw")
    assert pub.wait_subscribers({"drv/imu.raw": 2}, 2.0)
    info = raw_imu_info("drv/imu.raw:left", "left", 100.0, device="x")
    data = _raw(7)
    pub.publish("drv/imu.raw", info, data[:3], t_host=11, t_sensor=22)
    pub.publish("drv/imu.raw", info, data[3:], t_host=33, t_sensor=-1, flags=Flag.GAP)
    try:
        for _ in range(2):
            assert sub.socket.poll(2000) and raw.poll(2000)
            blk = sub.recv()
            topic, head, body = raw.recv_multipart()
            assert pack_block(blk) == head + body
            again = decode_message(head + body)
            assert again.data.tobytes() == blk.data.tobytes() and again.header == blk.header
    finally:
        raw.close()
        sub.close()
        pub.close()
        ctx.term()


def test_recorder_node_writes_a_standard_mcap_file(tmp_path: Path):
    info = raw_imu_info("drv/imu.raw:left", "left", 100.0)
    rec = Recorder.create("rec", path=str(tmp_path / "s-{time}.mcap"), compression="lz4")
    data = _raw(50, seed=3)
    for k in range(0, 50, 5):
        rec.on_block("in", make_block(info, data[k:k + 5], t_host=int(data["t_host"][k]),
                                      seq=k // 5))
    rec.on_eos()
    rec.teardown()
    (path,) = tmp_path.glob("s-*Z.mcap")
    with open(path, "rb") as f:  # the mcap library reads it, summary included
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == 10
        (ch,) = summary.channels.values()
        assert ch.topic == "drv/imu.raw:left" and ch.metadata["kind"] == "imu.raw"
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    anchor = meta[SESSION_METADATA]
    assert abs(int(anchor["utc_ns"]) - time.time_ns()) < 60e9
    assert int(anchor["monotonic_ns"]) <= time.monotonic_ns()
    streams = read_streams(path)
    got = streams["drv/imu.raw:left"]
    assert got.data.tobytes() == data.tobytes()
    assert list(got.header["seq"]) == list(range(10))
    assert got.info == info


def synth_session(path: Path, seconds: float, sensors: tuple[str, ...] = ("left", "right"),
                  rate_hz: float = 100.0, block: int = 1,
                  chunk_bytes: int = 1 << 20) -> dict[str, np.ndarray]:
    """Write a session of per-sensor imu.raw blocks as a driver would have sent them."""
    n = int(seconds * rate_hz)
    out = {}
    w = SessionWriter(path, flush_s=3600.0, chunk_bytes=chunk_bytes)
    infos = [raw_imu_info(f"drv/imu.raw:{s}", s, rate_hz) for s in sensors]
    arrays = [_raw(n, seed=i) for i in range(len(sensors))]
    for k in range(0, n, block):
        for info, arr in zip(infos, arrays):
            blk = arr[k:k + block]
            t = int(blk["t_host"][0])
            w.write_raw(info, pack_array(info, blk, seq=k // block, t_host=t), log_time=t,
                        publish_time=t, sequence=k // block)
    w.close()
    for info, arr in zip(infos, arrays):
        out[info.stream] = arr
    return out


def _run(graph_path: Path, timeout_s: float = 60.0) -> None:
    sup = Supervisor(load_graph(graph_path))
    sup.start()
    end = time.monotonic() + timeout_s
    assert sup.run(until=lambda: time.monotonic() > end) == 0
    assert time.monotonic() < end, "graph did not finish on its own"


def test_record_then_replay_is_bit_for_bit(write_graph, tmp_path: Path):
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    _run(write_graph(f"""
        version: 1
        chain: {CHAIN}
        nodes:
          - id: sim
            kind: drivers.sim.SimImu
            params: {{speed: 0, duration_s: 3, block: 2, seed: 4}}
          - id: rec
            kind: nodes.recorder.Recorder
            params: {{path: "{first}"}}
            inputs: {{in: [sim/imu.raw, sim/chain.truth]}}
            restart: never
        """, "record.yaml"))
    _run(write_graph(f"""
        version: 1
        nodes:
          - id: replay
            kind: drivers.replay.Replay
            params: {{path: "{first}", speed: 0, merge_s: 0}}
            outputs: [imu.raw, chain.truth]
          - id: rec
            kind: nodes.recorder.Recorder
            params: {{path: "{second}"}}
            inputs: {{in: [replay/imu.raw, replay/chain.truth]}}
        """, "replay.yaml"))
    a, b = read_streams(first), read_streams(second)
    assert sorted(a) == ["sim/chain.truth", "sim/imu.raw:shank", "sim/imu.raw:thigh"]
    assert sorted(b) == ["replay/chain.truth", "replay/imu.raw:shank", "replay/imu.raw:thigh"]
    for name, sa in a.items():
        sb = b[name.replace("sim/", "replay/")]
        assert len(sa.data) == 300
        assert sa.data.tobytes() == sb.data.tobytes()  # every sample, every bit
        for field in ("t_host", "t_sensor", "n", "flags"):
            assert np.array_equal(sa.header[field], sb.header[field]), field
        assert sb.info.source == sa.info.source and sb.info.meta == sa.info.meta


def _wait_for(cond, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_leaves_a_file_readable_up_to_the_last_flush(write_graph, tmp_path: Path):
    path = tmp_path / "killed.mcap"
    synth_session(tmp_path / "source.mcap", 30.0)
    sup = Supervisor(load_graph(write_graph(f"""
        version: 1
        nodes:
          - id: replay
            kind: drivers.replay.Replay
            params: {{path: "{tmp_path / 'source.mcap'}", speed: 1}}
            outputs: [imu.raw]
          - id: rec
            kind: nodes.recorder.Recorder
            params: {{path: "{path}", flush_s: 0.25}}
            inputs: {{in: [replay/imu.raw]}}
            restart: never
        """)))
    sup.start()
    t0 = time.monotonic()
    killed: list[int] = []
    on_disk: list[int] = []  # samples readable from the file just before the kill
    t0_kill: list[float] = []

    def readable(p: Path) -> int:
        with SessionReader(p) as reader:
            return sum(len(run) for runs in reader.runs() for run in runs)

    def until() -> bool:
        # killed once 1.2 s of both sensors is on disk (not after a fixed time: under load
        # the graph may start late), and the file then read again after the kill
        if not killed and path.exists() and time.monotonic() - t0 > 0.5:
            on_disk.append(readable(path))
            if on_disk[-1] >= 2 * 100 * 1.2:
                pid = sup.workers["rec"].proc.pid
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                t0_kill.append(time.monotonic())
        assert time.monotonic() - t0 < 60, f"never 1.2 s on disk: {on_disk[-3:]}"
        return bool(killed) and time.monotonic() - t0_kill[0] > 0.5

    sup.run(until=until)
    assert killed
    with SessionReader(path) as reader:
        total = sum(len(run) for runs in reader.runs() for run in runs)
        assert reader.truncated  # no summary: the writer never finished
        assert reader.session["format"] == "imuflow-session-v1"
    assert total >= on_disk[-1]  # all that was flushed before the kill is still readable
    for stream in read_streams(path).values():
        assert np.array_equal(stream.data["counter"], np.arange(len(stream.data)))


def test_unwritable_path_fails_setup_with_the_path(tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a folder should be")
    target = blocker / "session.mcap"
    with pytest.raises(RecordingError, match=f"recording '{target}': cannot create the file"):
        Recorder.create("rec", path=str(target))


def test_unwritable_path_stops_the_graph_with_one_clear_error(write_graph, tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    target = blocker / "s.mcap"
    graph = write_graph(f"""
        version: 1
        chain: {CHAIN}
        nodes:
          - id: sim
            kind: drivers.sim.SimImu
            params: {{speed: 0, duration_s: 1}}
          - id: rec
            kind: nodes.recorder.Recorder
            params: {{path: "{target}"}}
            inputs: {{in: [sim/imu.raw]}}
            restart: never
        """)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(graph), "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode != 0
    assert proc.stderr.count(f"[rec] cannot run: recording '{target}': cannot create") == 1
    assert "Traceback" not in proc.stderr


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
def test_full_disk_stops_only_the_recorder(write_graph, tmp_path: Path, capfd):
    disk = tmp_path / "small_disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "128k"):
        if os.environ.get("CI"):  # CI runs as root: a skip there would hide the full-disk check
            pytest.fail("CI must be able to mount a 128 kB tmpfs (root) for the full-disk test")
        pytest.skip("needs root to mount a 128 kB tmpfs as the full disk")
    try:
        path = disk / "full.mcap"
        synth_session(tmp_path / "source.mcap", 60.0)
        graph = write_graph(f"""
            version: 1
            nodes:
              - id: replay
                kind: drivers.replay.Replay
                params: {{path: "{tmp_path / 'source.mcap'}", speed: 10, loop: true}}
                outputs: [imu.raw]
              - id: rec
                kind: nodes.recorder.Recorder
                params: {{path: "{path}", compression: none, flush_s: 0.2}}
                inputs: {{in: [replay/imu.raw]}}
                restart: never
              - id: relay
                kind: nodes.relay.Relay
                inputs: {{in: replay/imu.raw}}
            """)
        sup = Supervisor(load_graph(graph))
        sup.start()
        t0 = time.monotonic()
        seen: dict[str, float] = {}

        def until() -> bool:
            now = time.monotonic()
            if sup.workers["rec"].finished and "rec_end" not in seen:
                seen["rec_end"] = now
            if "rec_end" in seen and now - seen["rec_end"] > 1.0:
                seen["others_alive"] = all(sup.workers[g].proc is not None
                                           and sup.workers[g].proc.poll() is None
                                           for g in ("replay", "relay"))
                return True
            return now - t0 > 20

        sup.run(until=until)
        assert "rec_end" in seen, "recorder did not stop on the full disk"
        assert seen["others_alive"], "the rest of the graph stopped with the recorder"
        err = capfd.readouterr().err
        assert f"recording '{path}'" in err and "the disk is full" in err
        with SessionReader(path) as reader:
            assert sum(len(r) for runs in reader.runs() for r in runs) > 0
            assert reader.truncated
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# -- format v2 (StreamInfo once per channel), McapWriter, compressions -----------------------------

def _write_v1_session(path: Path, seconds: float = 1.0) -> dict[str, np.ndarray]:
    """A session as imuflow wrote it before format v2: StreamInfo JSON in every message."""
    from mcap.writer import Writer

    from pipeline.recording.session_format import (
        MESSAGE_ENCODING_V1,
        META_BUS_TOPIC,
        META_KIND,
        META_STREAM_INFO,
        SCHEMA_NAME,
    )
    n = int(seconds * 100)
    infos = [raw_imu_info(f"drv/imu.raw:{s}", s, 100.0) for s in ("left", "right")]
    arrays = [_raw(n, seed=i) for i in range(2)]
    with open(path, "wb") as f:
        w = Writer(f)
        w.start(profile="imuflow", library="imuflow 0.x")
        sid = w.register_schema(SCHEMA_NAME, MESSAGE_ENCODING_V1, b"v1")
        w.add_metadata(SESSION_METADATA, {"format": "imuflow-session-v1", "utc_ns": "0",
                                          "monotonic_ns": "0"})
        cids = [w.register_channel(i.stream, MESSAGE_ENCODING_V1, sid, {
            META_STREAM_INFO: i.to_json().decode(), META_BUS_TOPIC: "drv/imu.raw",
            META_KIND: "imu.raw"}) for i in infos]
        for k in range(n):
            for cid, info, arr in zip(cids, infos, arrays):
                t = int(arr["t_host"][k])
                w.add_message(cid, log_time=t, publish_time=t, sequence=k,
                              data=pack_array(info, arr[k:k + 1], seq=k, t_host=t))
        w.finish()
    return {i.stream: a for i, a in zip(infos, arrays)}


def test_messages_hold_the_header_and_payload_only(tmp_path: Path):
    """v2: the StreamInfo JSON is in the channel metadata, once; a message is 40 bytes + payload."""
    info = raw_imu_info("drv/imu.raw:left", "left", 100.0, device="x" * 300)
    path = tmp_path / "s.mcap"
    w = SessionWriter(path)
    data = _raw(30)
    for k in range(0, 30, 3):
        w.write_block(make_block(info, data[k:k + 3], t_host=int(data["t_host"][k]), seq=k))
    w.close()
    with open(path, "rb") as f:
        reader = make_reader(f)
        (ch,) = reader.get_summary().channels.values()
        assert ch.message_encoding == "imuflow-bus-frame-v2"
        assert ch.metadata["stream_info"] == info.to_json().decode()
        msgs = [m for _, _, m in reader.iter_messages()]
    assert len(msgs) == 10
    assert {len(m.data) for m in msgs} == {FIXED_HEADER.size + 3 * RAW_IMU_DTYPE.itemsize}
    blk = decode_message(msgs[1].data, info=info)
    assert blk.header.seq == 3 and blk.data.tobytes() == data[3:6].tobytes() and blk.info == info
    with pytest.raises(Exception, match="pass the channel's info"):
        decode_message(msgs[1].data)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_mcap_library_reads_what_the_writer_writes(tmp_path: Path, compression: str):
    """Summary, chunk and message indexes are valid MCAP: the mcap library reads every message."""
    from mcap.reader import SeekingReader, StreamReader
    path = tmp_path / f"s-{compression}.mcap"
    truth = synth_session(path, 3.0, sensors=("a", "b", "c"), block=3, chunk_bytes=8_000)
    path2 = tmp_path / f"t-{compression}.mcap"
    w = SessionWriter(path2, compression=compression, chunk_bytes=8_000)
    infos = {s: raw_imu_info(f"drv/imu.raw:{s}", s, 100.0) for s in ("a", "b", "c")}
    for k in range(0, 300, 3):
        for info in infos.values():
            arr = truth[info.stream][k:k + 3]
            w.write_block(make_block(info, arr, t_host=int(arr["t_host"][0]), seq=k // 3),
                          log_time=int(arr["t_host"][0]) + 7)
    w.close()
    with open(path2, "rb") as f:
        seeking = SeekingReader(f)
        summary = seeking.get_summary()
        assert summary.statistics.message_count == 300
        assert summary.statistics.chunk_count == len(summary.chunk_indexes) > 3
        assert sorted(summary.statistics.channel_message_counts.values()) == [100, 100, 100]
        got: dict[str, list[bytes]] = {}
        for _, ch, msg in seeking.iter_messages(log_time_order=True):
            assert msg.log_time == msg.publish_time + 7
            got.setdefault(ch.topic, []).append(bytes(msg.data[FIXED_HEADER.size:]))
        f.seek(0)
        streamed = sum(1 for _ in StreamReader(f, validate_crcs=True).records)
        assert streamed > 300
    for stream, arr in truth.items():
        assert b"".join(got[stream]) == arr.tobytes()
    assert {k: v.data.tobytes() for k, v in read_streams(path2).items()} == {
        k: v.tobytes() for k, v in truth.items()}
    assert {k: v.data.tobytes() for k, v in read_streams(path).items()} == {
        k: v.tobytes() for k, v in truth.items()}


def test_log_times_are_the_recorders_receive_times(tmp_path: Path):
    """ChannelRun.log_time is MCAP log_time (receive time), not publish_time, in every chunk."""
    path = tmp_path / "s.mcap"
    info_a = raw_imu_info("drv/imu.raw:a", "a", 100.0)
    info_b = raw_imu_info("drv/imu.raw:b", "b", 100.0)
    w = SessionWriter(path, chunk_bytes=4096)
    data = _raw(40)
    for k in range(40):  # b's blocks alternate in size: chunks with mixed record lengths
        w.write_block(make_block(info_a, data[k:k + 1], t_host=k), log_time=10_000 + k)
        if k % 2:
            w.write_block(make_block(info_b, data[k - 1:k + 1], t_host=k), log_time=20_000 + k)
        else:
            w.write_block(make_block(info_b, data[k:k + 1], t_host=k), log_time=20_000 + k)
    w.close()
    with SessionReader(path) as r:
        runs = [run for chunk in r.runs() for run in chunk]
    la = np.concatenate([x.log_time for x in runs if x.channel.stream.endswith(":a")])
    lb = np.concatenate([x.log_time for x in runs if x.channel.stream.endswith(":b")])
    np.testing.assert_array_equal(la, 10_000 + np.arange(40))
    np.testing.assert_array_equal(lb, 20_000 + np.arange(40))
    hb = np.concatenate([x.header for x in runs if x.channel.stream.endswith(":b")])
    np.testing.assert_array_equal(hb["t_host"], np.arange(40))
    assert read_streams(path)["drv/imu.raw:b"].data.tobytes() == np.concatenate(
        [data[k - 1:k + 1] if k % 2 else data[k:k + 1] for k in range(40)]).tobytes()


def test_sessions_of_format_v1_still_read(tmp_path: Path):
    path = tmp_path / "v1.mcap"
    truth = _write_v1_session(path)
    streams = read_streams(path)
    assert set(streams) == set(truth)
    for name, arr in truth.items():
        assert streams[name].data.tobytes() == arr.tobytes()
        assert streams[name].info.source == name.rsplit(":", 1)[1]
        np.testing.assert_array_equal(streams[name].header["t_host"], arr["t_host"])


def test_write_raw_stores_bus_frames_without_their_stream_info(tmp_path: Path):
    """Importers hand packed bus frames (pack_array): stored as v2, read back the same."""
    info = raw_imu_info("imp/imu.raw:x", "x", 50.0)
    data = _raw(10)
    path = tmp_path / "s.mcap"
    w = SessionWriter(path)
    frames = pack_array(info, data, seq=4, t_host=99, t_sensor=5)
    assert len(frames) > FIXED_HEADER.size + data.nbytes  # JSON inside the bus frames
    w.write_raw(info, frames, log_time=1, publish_time=99, sequence=4)
    w.close()
    with open(path, "rb") as f:
        (msg,) = [m for _, _, m in make_reader(f).iter_messages()]
    assert len(msg.data) == FIXED_HEADER.size + data.nbytes
    blk = decode_message(msg.data, info=info)
    assert (blk.header.seq, blk.header.t_host, blk.header.t_sensor) == (4, 99, 5)
    assert blk.data.tobytes() == data.tobytes()


def test_unknown_message_encoding_is_refused_with_the_file(tmp_path: Path):
    from mcap.writer import Writer

    from pipeline.recording.session_reader import SessionFileError
    path = tmp_path / "future.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.start()
        sid = w.register_schema("x", "x", b"")
        info = raw_imu_info("a/imu.raw:a", "a", 1.0)
        cid = w.register_channel("a/imu.raw:a", "imuflow-bus-frame-v9", sid,
                                 {"stream_info": info.to_json().decode()})
        w.add_message(cid, log_time=1, publish_time=1, data=b"\0" * 40)
        w.finish()
    with pytest.raises(SessionFileError, match=f"session '{path}'.*imuflow-bus-frame-v9"):
        read_streams(path)


@pytest.mark.parametrize("pattern", ["interleaved", "irregular", "mixed_sizes"])
def test_every_chunk_layout_reads_back_exactly(tmp_path: Path, pattern: str):
    """Interleaved streams (strided views), irregular order (gather) and mixed sizes (indexes)."""
    path = tmp_path / f"{pattern}.mcap"
    infos = [raw_imu_info(f"drv/imu.raw:{s}", s, 100.0) for s in ("a", "b", "c")]
    arrays = [_raw(240, seed=i) for i in range(3)]
    rng = np.random.default_rng(1)
    pos = [0, 0, 0]
    order = {"interleaved": [0, 1, 2] * 80, "irregular": rng.permutation([0, 1, 2] * 80).tolist(),
             "mixed_sizes": [0, 1, 2] * 80}[pattern]
    w = SessionWriter(path, chunk_bytes=6000, flush_s=3600.0)
    for k, i in enumerate(order):
        n = 2 if pattern == "mixed_sizes" and i == 2 and k % 6 == 2 else 1
        blk = arrays[i][pos[i]:pos[i] + n]
        pos[i] += n
        w.write_block(make_block(infos[i], blk, t_host=int(blk["t_host"][0]), seq=k),
                      log_time=1000 + k)
    w.close()
    with SessionReader(path) as r:
        runs = [run for chunk in r.runs() for run in chunk]
    assert len(runs) > 3
    got = read_streams(path)
    for info, arr, n in zip(infos, arrays, pos):
        assert got[info.stream].data.tobytes() == arr[:n].tobytes()
        lt = np.concatenate([x.log_time for x in runs if x.channel.stream == info.stream])
        assert np.array_equal(lt, 1000 + np.flatnonzero(np.array(order) == infos.index(info)))


def test_background_chunk_writing_gives_the_same_file(tmp_path: Path):
    """McapWriter(background=True) (what SessionWriter uses) writes the same bytes as writing
    each chunk in the caller's thread, with a channel registered between chunks too."""
    import io

    from pipeline.recording.mcap_writer import McapWriter
    data = [_raw(40, seed=s).tobytes() for s in range(3)]

    def write(background: bool) -> bytes:
        out = io.BytesIO()
        w = McapWriter(out, chunk_bytes=3000, compression="lz4", background=background)
        w.start(profile="imuflow", library="test")
        sid = w.register_schema("s", "e", b"x")
        cids = [w.register_channel("a", "e", sid, {})]
        for k in range(300):
            if k == 150:
                cids.append(w.register_channel("b", "e", sid, {}))  # waits for pending chunks
            for c in cids:
                w.add_message(c, log_time=k, publish_time=k, sequence=k,
                              data=data[c][k % 40 * 60:(k % 40 + 1) * 60])
            if k % 97 == 0:
                w.flush()
        w.finish()
        return out.getvalue()

    ref = write(False)
    assert write(True) == ref
    reader = make_reader(io.BytesIO(ref))  # the mcap library reads it
    assert sum(1 for _ in reader.iter_messages()) == 300 + 150


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_large_read_only_blocks_are_recorded_without_copies_and_read_back(
        tmp_path: Path, compression: str):
    """Read-only payloads of 64 KB or more (as the bus delivers) are kept as views until their
    chunk is written and compressed from the parts; the file reads back bit for bit (mcap
    library with CRC checks, and our reader), also when the block is dropped meanwhile."""
    from mcap.reader import StreamReader
    path = tmp_path / f"big-{compression}.mcap"
    info = raw_imu_info("drv/imu.raw:a", "a", 100.0)
    w = SessionWriter(path, compression=compression, chunk_bytes=1 << 20)
    blocks = []
    for k in range(6):  # 2000 samples = 120 KB each (kept as views), then 3 (packed)
        for j, n in enumerate((2000, 3)):
            arr = _raw(n, seed=10 * k + j)
            blocks.append(arr)
            block = make_block(info, arr, t_host=int(arr["t_host"][0]), seq=2 * k + j)
            w.write_block(block, log_time=2 * k + j)
            # what the open chunk holds: the large payload itself, the small one packed
            pending = [np.frombuffer(p, np.uint8) for p in w._mcap._parts]
            assert any(np.shares_memory(block.data, p) for p in pending) == (n == 2000)
            del block  # the read-only block is dropped right away
    w.close()
    with open(path, "rb") as f:
        assert sum(1 for _ in StreamReader(f, validate_crcs=True).records) > 12
    got = read_streams(path)["drv/imu.raw:a"].data
    assert got.tobytes() == np.concatenate(blocks).tobytes()
