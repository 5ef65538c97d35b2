"""Message frames: round trip, zero copy, schema and payload checks, gap detection."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pipeline.runtime.errors import MessageError
from pipeline.runtime.message import SCHEMA_VERSION, Decoder, Encoder, Flag, Header, StreamInfo
from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info


def frames_of(info: StreamInfo, data, seq: int = 0, epoch: int = 7, flags=Flag.NONE) -> list:
    header = Header(info=info, seq=seq, t_host=123, t_sensor=456, n=len(data), flags=flags,
                    epoch=epoch)
    return Encoder().encode(info.stream.encode(), header, data)


def test_structured_round_trip_keeps_every_field():
    info = raw_imu_info("sim/imu.raw:thigh", "thigh", 100.0)
    data = np.zeros(5, RAW_IMU_DTYPE)
    data["t_sensor"] = np.arange(5) * 10_000_000
    data["acc"] = np.random.default_rng(0).normal(size=(5, 3))
    blk = Decoder().decode(frames_of(info, data))
    assert blk.topic == "sim/imu.raw:thigh"
    assert blk.info == info
    assert blk.header.t_host == 123 and blk.header.t_sensor == 456 and blk.n == 5
    np.testing.assert_array_equal(blk.data, data)
    assert blk.data.dtype == RAW_IMU_DTYPE


def test_payload_is_not_copied_on_send_and_is_read_only_on_receive():
    info = StreamInfo.for_array("a/x", "x", np.float32, shape=(3,))
    data = np.arange(30, dtype=np.float32).reshape(10, 3)
    frames = frames_of(info, data)
    assert isinstance(frames[2], memoryview) and frames[2].obj is data  # a view, no copy
    blk = Decoder().decode(frames)
    assert not blk.data.flags.writeable
    assert np.shares_memory(blk.data, np.frombuffer(frames[2], dtype=np.float32))


def test_other_schema_version_is_rejected_with_a_clear_message():
    info = StreamInfo.for_array("a/x", "x", np.float32)
    frames = frames_of(info, np.zeros(2, np.float32))
    bad = struct.pack("<H", SCHEMA_VERSION + 1) + bytes(frames[1])[2:]
    with pytest.raises(MessageError, match="schema version 2"):
        Decoder().decode([frames[0], bad, frames[2]])


def test_payload_not_matching_header_is_rejected():
    info = StreamInfo.for_array("a/x", "x", np.float32, shape=(3,))
    frames = frames_of(info, np.zeros((4, 3), np.float32))
    with pytest.raises(MessageError, match="payload is 44 bytes but header says 4 samples"):
        Decoder().decode([frames[0], frames[1], bytes(frames[2])[:-4]])


@pytest.mark.parametrize("frames, match", [
    ([b"a/x", b"short"], "expected 3 frames"),
    ([b"a/x", b"\x01\x00" + b"\x00" * 10, b""], "header is 12 bytes"),
    ([b"\xff\xfe", b"", b""], "not UTF-8"),
])
def test_malformed_frames_raise_message_error(frames, match):
    with pytest.raises(MessageError, match=match):
        Decoder().decode(frames)


def test_sequence_gaps_and_publisher_restart_are_detected():
    info = StreamInfo.for_array("a/x", "x", np.int64)
    dec = Decoder()
    d = np.zeros(1, np.int64)
    assert not dec.decode(frames_of(info, d, seq=0)).gap
    assert not dec.decode(frames_of(info, d, seq=1)).gap
    blk = dec.decode(frames_of(info, d, seq=4))
    assert blk.gap and blk.missed == 2
    restarted = dec.decode(frames_of(info, d, seq=0, epoch=99))
    assert restarted.gap and restarted.missed == -1
    flagged = dec.decode(frames_of(info, d, seq=1, epoch=99, flags=Flag.GAP))
    assert flagged.gap and flagged.missed == 0


def test_json_payload_round_trip():
    info = StreamInfo(stream="n/status", kind="status")
    header = Header(info=info, seq=0, t_host=1, n=1, flags=Flag.JSON)
    frames = Encoder().encode(b"n/status", header, {"rate_in_hz": 99.5, "node": "n"})
    assert Decoder().decode(frames).data == {"rate_in_hz": 99.5, "node": "n"}
