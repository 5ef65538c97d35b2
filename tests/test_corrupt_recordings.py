"""Corrupt and foreign recordings: damaged chunks are skipped and counted, the rest replays.

Files are real sessions written by the SessionWriter (or foreign ones by the mcap
library), then damaged byte by byte; they are read back with the SessionReader and
played by real Replay nodes (and once by `imuflow run`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from mcap.reader import make_reader
from mcap.writer import Writer

from drivers.replay import Replay
from pipeline.recording.session_reader import SessionReader, read_streams, session_sensors
from pipeline.runtime.errors import SessionFileError
from pipeline.runtime.node import GraphContext
from tests.test_recorder import REPO, synth_session

SECONDS, RATE = 4.0, 100.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict, list]:
    """A two-sensor session in many small chunks: (file bytes, truth, [(start, length)] chunks)."""
    path = tmp_path_factory.mktemp("rec") / "s.mcap"
    truth = synth_session(path, SECONDS, block=2, chunk_bytes=4096)
    with open(path, "rb") as f:
        chunks = [(c.chunk_start_offset, c.chunk_length)
                  for c in make_reader(f).get_summary().chunk_indexes]
    assert len(chunks) >= 8
    return path.read_bytes(), truth, sorted(chunks)


def _write(tmp: Path, data: bytes | bytearray, name: str = "bad.mcap") -> Path:
    path = tmp / name
    path.write_bytes(bytes(data))
    return path


@contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging) when the block takes longer than ``seconds``."""
    def on_alarm(*_: object) -> None:
        raise AssertionError(f"hung for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _play(path: Path, run_dir: Path | None = None, **params) -> Replay:
    node = Replay.create("rp", context=GraphContext(run_dir=run_dir), path=str(path), **params)
    node.on_start()
    while node.poll(0.05):
        pass
    node.on_stop()
    node.teardown()
    return node


def _samples(node: Replay, sensor: str) -> np.ndarray:
    blocks = [b.data for b in node.emitted if b.info.source == sensor]
    return np.concatenate(blocks) if blocks else np.empty(0)


def _check_subset(got: np.ndarray, want: np.ndarray) -> None:
    """Every replayed sample is a recorded one, bit for bit, in order (none invented)."""
    pos = np.searchsorted(want["t_host"], got["t_host"])
    assert (pos < len(want)).all()
    assert got.tobytes() == want[pos].tobytes()
    assert (np.diff(pos) > 0).all()


@pytest.mark.parametrize("speed", [0.0, 50.0])
def test_one_flipped_bit_skips_only_its_chunk(recording, tmp_path, speed, caplog):
    """The report's 1-bit flip (a counter turned into 7566047373982433283): caught by the CRC."""
    data, truth, chunks = recording
    start, length = chunks[3]
    bad = bytearray(data)
    bad[start + length - 40] ^= 0x10  # inside the chunk's compressed records
    path = _write(tmp_path, bad)
    with no_hang():
        node = _play(path, speed=speed)
    assert node.stats.extra["corrupt_chunks"] == 1
    assert "skipped" in caplog.text and "rp" in caplog.text
    for sensor in ("left", "right"):
        want = truth[f"drv/imu.raw:{sensor}"]
        got = _samples(node, sensor)
        _check_subset(got, want)
        assert len(want) - 250 < len(got) < len(want)  # one 4 KiB chunk of two sensors lost


@pytest.mark.parametrize("speed", [0.0, 50.0])
def test_sixteen_flipped_bytes_replay_the_rest_without_error(recording, tmp_path, speed):
    data, truth, chunks = recording
    rng = np.random.default_rng(16)
    bad = bytearray(data)
    first, end = chunks[0][0], chunks[-1][0] + chunks[-1][1]
    for pos in rng.integers(first, end, 16):
        bad[int(pos)] ^= 0xFF
    path = _write(tmp_path, bad)
    with no_hang():
        node = _play(path, speed=speed)
    extra = node.stats.extra
    assert extra["corrupt_chunks"] + extra["corrupt_records"] >= 1
    got = _samples(node, "left")
    assert len(got) > 0
    _check_subset(got, truth["drv/imu.raw:left"])


def test_damaged_single_chunk_file_ends_instead_of_hanging(tmp_path):
    path = tmp_path / "one.mcap"
    synth_session(path, 0.5, block=1)
    with open(path, "rb") as f:
        (chunk,) = make_reader(f).get_summary().chunk_indexes
    bad = bytearray(path.read_bytes())
    bad[chunk.chunk_start_offset + chunk.chunk_length // 2] ^= 0x55
    with no_hang():
        node = _play(_write(tmp_path, bad), speed=0.0)
    assert node.emitted == [] and node.stats.extra["corrupt_chunks"] == 1


def test_damaged_record_length_resynchronises_at_the_next_chunk(recording, tmp_path):
    data, truth, chunks = recording
    bad = bytearray(data)
    start = chunks[2][0]
    bad[start + 1:start + 9] = (2**62).to_bytes(8, "little")  # a chunk claiming 4 EiB
    with no_hang():
        with SessionReader(_write(tmp_path, bad)) as reader:
            n = sum(len(r) for runs in reader.runs() for r in runs)
            assert reader.corrupt_records == 1
    assert n > 0.8 * 2 * SECONDS * RATE / 2


def test_garbage_summary_offsets_end_reading_without_an_exception(recording, tmp_path):
    """A damaged record length and a summary whose later chunk offsets are garbage (past any
    seekable offset): reading ends at the damage, without an exception."""
    data, _, chunks = recording
    bad = bytearray(data)
    start = chunks[2][0]
    bad[start + 1:start + 9] = (2**62).to_bytes(8, "little")
    summary = chunks[-1][0] + chunks[-1][1]
    for k, (offset, _) in enumerate(chunks[3:]):
        at = bad.index(offset.to_bytes(8, "little"), summary)
        bad[at:at + 8] = (2**64 - 1 - k).to_bytes(8, "little")
    with no_hang():
        with SessionReader(_write(tmp_path, bad)) as reader:
            n = sum(len(r) for runs in reader.runs() for r in runs)
            assert reader.corrupt_records == 1 and reader.truncated
    assert n > 0


def test_magic_only_empty_and_foreign_files_are_refused_at_start(tmp_path):
    magic = _write(tmp_path, b"\x89MCAP0\r\n", "magic.mcap")
    with pytest.raises(SessionFileError, match="nothing to replay .only the MCAP magic"):
        Replay.create("rp", path=str(magic))
    empty = _write(tmp_path, b"", "empty.mcap")
    with pytest.raises(SessionFileError, match="not an MCAP file"):
        Replay.create("rp", path=str(empty))
    with pytest.raises(SessionFileError, match="not an imuflow session"):
        Replay.create("rp", path=str(_foreign(tmp_path)))


def _foreign(tmp_path: Path) -> Path:
    """An MCAP file written by the mcap library with a JSON schema of its own."""
    path = tmp_path / "foreign.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.start()
        sid = w.register_schema("Point", "jsonschema", b'{"type": "object"}')
        cid = w.register_channel("/points", "json", sid)
        for i in range(100):
            w.add_message(cid, log_time=i * 10**7, publish_time=i * 10**7,
                          data=b'{"x": %d}' % i)
        w.finish()
    return path


def test_imuflow_run_refuses_a_foreign_session_with_one_line(tmp_path, runs_dir):
    config = tmp_path / "g.yaml"
    config.write_text(f"version: 1\nnodes:\n  - id: replay\n    kind: drivers.replay.Replay\n"
                      f"    params: {{path: {_foreign(tmp_path)}, speed: 0}}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config), "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0
    assert "not an imuflow session" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_restarted_replay_goes_on_where_it_was(recording, tmp_path):
    """A replay node that dies mid-file (no on_stop) is restarted: it never starts over."""
    data, truth, _ = recording
    path = _write(tmp_path, data, "good.mcap")
    first = Replay.create("rp", context=GraphContext(run_dir=tmp_path), path=str(path),
                          speed=0.0, merge_s=0.0)
    first.on_start()
    for _ in range(150):
        first.poll(0.0)  # one block per call; each call past its deadline saves the position
    first._resume_due = 0.0
    first.poll(0.0)
    first.on_stop()  # a crash: the node loop still calls on_stop, then the process exits
    assert (tmp_path / "rp.replay.json").exists()
    with no_hang():
        second = _play(path, run_dir=tmp_path, speed=0.0, merge_s=0.0)
    want = truth["drv/imu.raw:left"]
    a, b = _samples(first, "left"), _samples(second, "left")
    assert b["t_host"][0] > want["t_host"][0]  # not from the start
    assert b["t_host"][0] <= a["t_host"][-1] + 10**9 // int(RATE) * 2  # nothing skipped
    assert b["t_host"][-1] == want["t_host"][-1]  # to the end
    assert [blk.gap for blk in second.emitted[:2]] == [True, True]  # one per stream
    assert not (tmp_path / "rp.replay.json").exists()  # ended normally: forgotten


@given(flips=hs.lists(hs.tuples(hs.floats(0, 1, exclude_max=True), hs.integers(1, 255)),
                      min_size=1, max_size=24))
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fuzz_byte_flips_never_raise_or_hang(recording, tmp_path, flips):
    data, truth, _ = recording
    bad = bytearray(data)
    for where, xor in flips:
        bad[int(where * len(bad))] ^= xor
    path = _write(tmp_path, bad)
    with no_hang(30):
        names = session_sensors(path)  # the summary, read when a graph is loaded
        assert names is None or isinstance(names, list)
        try:
            with SessionReader(path) as reader:
                for runs in reader.runs(batch_ns=10**9):
                    for run in runs:
                        run.payload_bytes(0, len(run))
            node = _play(path, speed=0.0)
        except SessionFileError:
            return  # refused with a message naming the file (magic or channel records hit)
    for sensor in ("left", "right"):
        got = _samples(node, sensor)
        if len(got):
            assert got.dtype == truth[f"drv/imu.raw:{sensor}"].dtype


@pytest.mark.parametrize("speed", [0.0, 20.0])
def test_imuflow_run_replays_around_damage_and_ends_by_itself(recording, tmp_path, runs_dir,
                                                             speed):
    """The report's LZ4 crash at speed 0 (graph aborted) and restart loop: now it just ends."""
    data, truth, chunks = recording
    bad = bytearray(data)
    for start, length in (chunks[2], chunks[6]):
        for k in range(8):
            bad[start + length // 2 + k * 7] ^= 0xA5
    src = _write(tmp_path, bad)
    out = tmp_path / "copy.mcap"
    config = tmp_path / "g.yaml"
    config.write_text(f"""\
version: 1
nodes:
  - id: replay
    kind: drivers.replay.Replay
    params: {{path: {src}, speed: {speed}}}
  - id: recorder
    kind: nodes.recorder.Recorder
    restart: never
    params: {{path: {out}}}
    inputs: {{in: [replay/imu.raw]}}
""")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config), "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipped (") == 2  # one line per damaged chunk, with the node id
    assert "[replay]" in proc.stderr and "restarting" not in proc.stderr
    got = read_streams(out)
    for sensor in ("left", "right"):
        want = truth[f"drv/imu.raw:{sensor}"]
        samples = got[f"replay/imu.raw:{sensor}"].data
        _check_subset(samples, want)
        assert len(want) - 500 < len(samples) < len(want)


def test_replay_process_that_crashes_goes_on_after_restart(recording, tmp_path, runs_dir):
    """A node in replay's process crashes once mid-file: the restarted replay does not start over."""
    data, truth, _ = recording
    src = _write(tmp_path, data, "good.mcap")
    out = tmp_path / "copy.mcap"
    config = tmp_path / "g.yaml"
    config.write_text(f"""\
version: 1
nodes:
  - id: replay
    kind: drivers.replay.Replay
    group: io
    params: {{path: {src}, speed: 2}}
  - id: crash
    kind: tests.fault_nodes.CrashAfter
    group: io
    params: {{after: 60, total: 100, rate_hz: 100, marker: {tmp_path / "crashed"}}}
  - id: recorder
    kind: nodes.recorder.Recorder
    restart: never
    params: {{path: {out}}}
    inputs: {{in: [replay/imu.raw]}}
""")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config), "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "crashed").exists() and "restarted: going on after" in proc.stderr
    got = read_streams(out)["replay/imu.raw:left"].data
    want = truth["drv/imu.raw:left"]
    assert np.array_equal(np.unique(got["t_host"]), want["t_host"])  # nothing lost
    went_on_s = float(re.search(r"going on after ([0-9.]+) s", proc.stderr).group(1))
    assert went_on_s > 0
    # repeated: what was sent after the last saved position (~0.1 s x speed); starting over
    # would repeat everything played before the crash (1.2 s of session, 120 samples)
    repeated = len(got) - len(want)
    assert repeated < 100, repeated


@given(flips=hs.lists(hs.tuples(hs.floats(0, 1, exclude_max=True), hs.integers(1, 255)),
                      min_size=1, max_size=8))
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fuzz_flips_in_the_summary_and_preamble(recording, tmp_path, flips):
    """Flips where no CRC helps: the channel records up front and the summary at the end."""
    data, _, chunks = recording
    first, end = chunks[0][0], chunks[-1][0] + chunks[-1][1]
    regions = [(8, first), (end, len(data))]
    bad = bytearray(data)
    for k, (where, xor) in enumerate(flips):
        a, b = regions[k % 2]
        bad[a + int(where * (b - a))] ^= xor
    path = _write(tmp_path, bad)
    with no_hang(30):
        names = session_sensors(path)
        assert names is None or isinstance(names, list)
        try:
            _play(path, speed=0.0)
        except SessionFileError:
            pass  # refused with a message naming the file (a channel record hit)
