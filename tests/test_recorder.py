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
from pipeline.bus import Publisher, Subscriber
from pipeline.graph import load_graph
from pipeline.message import _FIXED, Flag
from pipeline.session_format import (
    FIXED_HEADER,
    SESSION_METADATA,
    decode_message,
    pack_array,
    pack_block,
)
from pipeline.session_reader import SessionReader, read_streams
from pipeline.session_writer import RecordingError, SessionWriter
from pipeline.streams import RAW_IMU_DTYPE, raw_imu_info
from pipeline.supervisor import Supervisor
from pipeline.testing import make_block

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
    killed = []

    def until() -> bool:
        if not killed and time.monotonic() - t0 > 2.0:
            pid = sup.workers["rec"].proc.pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return time.monotonic() - t0 > 3.0

    sup.run(until=until)
    assert killed
    with SessionReader(path) as reader:
        total = sum(len(run) for runs in reader.runs() for run in runs)
        assert reader.truncated  # no summary: the writer never finished
        assert reader.session["format"] == "imuflow-session-v1"
    assert total >= 2 * 100 * 1.2  # two sensors, >= 1.2 s of the 2 s made it to disk
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
