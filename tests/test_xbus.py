"""Xbus / MTData2 parser tests: doc vectors (section 2.7), resync, chunking, builders."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from drivers.serial import xbus
from drivers.serial.xbus import XbusParser, build_message

VENDOR = bytes.fromhex(
    "FA FF 36 31 10 20 02 DF C5 10 60 04 00 45 9D A0 40 20 0C BE DC 9A FA 3F 54 9F 37"
    "41 1C BB 70 80 20 0C BB AA 5C 80 3B 8C 55 01 BB 81 33 00 E0 20 04 00 00 00 81 45"
)
X3 = bytes.fromhex(
    "FA FF 36 39 10 20 02 12 34 10 60 04 00 01 86 A0 40 20 0C 3F 00 00 00 BF A0"
    "00 00 41 1D 00 00 80 20 0C 3E 00 00 00 BD 80 00 00 3E 80 00 00 C0 20 0C 3F"
    "00 00 00 3E 80 00 00 BF 40 00 00 4A"
)


def mtdata2(pc: int, stf: int, acc, gyr, mag=None) -> bytes:
    """Build an MTData2 frame by hand from section 2.4 (big-endian f32 packets)."""
    data = struct.pack(">HBH", 0x1020, 2, pc) + struct.pack(">HBI", 0x1060, 4, stf)
    data += struct.pack(">HB3f", 0x4020, 12, *acc) + struct.pack(">HB3f", 0x8020, 12, *gyr)
    if mag is not None:
        data += struct.pack(">HB3f", 0xC020, 12, *mag)
    return build_message(0x36, data)


def test_vendor_vector_x2():
    p = XbusParser()
    (s,) = p.feed(VENDOR)
    assert s.counter == 57285
    assert s.t_sensor_ns == 4562336 * 100_000
    assert s.acc == pytest.approx((-0.43087, 0.83055, 9.79576), abs=1e-5)
    assert s.gyr == pytest.approx((-0.005199, 0.004283, -0.003943), abs=1e-6)
    assert s.mag is None
    assert s.extra == {"status": 0x81}
    assert p.stats.frames_ok == 1 and p.stats.checksum_errors == 0


def test_constructed_vector_x3_and_builder_agree():
    assert mtdata2(0x1234, 100000, (0.5, -1.25, 9.8125), (0.125, -0.0625, 0.25),
                   (0.5, 0.25, -0.75)) == X3
    (s,) = XbusParser().feed(X3)
    assert s == (10_000_000_000, 4660, (0.5, -1.25, 9.8125), (0.125, -0.0625, 0.25),
                 (0.5, 0.25, -0.75), None)


def test_checksum_error_x4():
    bad = bytearray(X3)
    bad[20] ^= 0x01
    p = XbusParser()
    assert p.feed(bytes(bad)) == []
    assert p.stats.checksum_errors == 1 and p.stats.frames_ok == 0
    assert len(p.feed(X3)) == 1


def test_noise_prefix_x5():
    p = XbusParser()
    assert len(p.feed(b"\x00\xfa\x13" + X3)) == 1
    assert p.stats.bytes_discarded == 3 and p.stats.frames_ok == 1 and p.stats.resyncs == 1


def test_command_builders_match_doc_bytes():
    assert xbus.go_to_config() == bytes.fromhex("FA FF 30 00 D1")
    assert xbus.go_to_measurement() == bytes.fromhex("FA FF 10 00 F1")
    assert build_message(0x31) == bytes.fromhex("FA FF 31 00 D0")
    assert build_message(0x18, b"\x02") == bytes.fromhex("FA FF 18 01 02 E6")
    assert xbus.set_output_imu(100) == bytes.fromhex(
        "FA FF C0 14 10 20 FF FF 10 60 FF FF 40 20 00 64 80 20 00 64 C0 20 00 64 85")
    assert build_message(0xC0) == bytes.fromhex("FA FF C0 00 41")
    with pytest.raises(ValueError, match="rate_hz"):
        xbus.set_output_imu(0)


def test_acks_are_kept_and_not_unknown():
    p = XbusParser()
    assert p.feed(bytes.fromhex("FA FF 31 00 D0 FA FF 42 01 04 BA")) == []
    assert p.messages == [(0x31, b""), (0x42, b"\x04")]
    assert p.stats.frames_ok == 2 and p.stats.unknown_type == 1


def test_extended_length_frame_with_unknown_packets():
    pad = struct.pack(">HB", 0x2030, 12) + bytes(12)  # EulerAngles: decoded as unknown
    data = b"".join([pad] * 17) + struct.pack(">HB3f", 0x4020, 12, 1.0, 2.0, 3.0)
    data += struct.pack(">HB3f", 0x8020, 12, 0.1, 0.2, 0.3)
    frame = build_message(0x36, data)
    assert len(data) > 254 and frame[3] == 0xFF and frame[4:6] == len(data).to_bytes(2, "big")
    p = XbusParser()
    (s,) = p.feed(frame)
    assert s.t_sensor_ns == -1 and s.counter == -1 and s.acc == (1.0, 2.0, 3.0)
    assert s.gyr == pytest.approx((0.1, 0.2, 0.3))
    assert p.unknown_packets == 17


def test_mtdata2_without_imu_is_unknown_not_error():
    frame = build_message(0x36, struct.pack(">HB4f", 0x2010, 16, 1, 0, 0, 0))
    p = XbusParser()
    assert p.feed(frame) == [] and p.stats.frames_ok == 1 and p.stats.unknown_type == 1


def test_inconsistent_packet_sizes_rejected():
    data = struct.pack(">HB3f", 0x4020, 12, 1, 2, 3) + struct.pack(">HB", 0x8020, 12) + bytes(8)
    p = XbusParser()
    assert p.feed(build_message(0x36, data)) == []
    assert p.stats.length_errors == 1 and p.stats.frames_ok == 0


def test_absurd_length_is_dropped_one_byte():
    p = XbusParser(max_payload=100)
    assert len(p.feed(bytes.fromhex("FA FF 36 FF 7F 00") + X3)) == 1
    assert p.stats.length_errors == 1 and p.stats.bytes_discarded == 6


def test_sample_time_fine_and_counter_unwrap():
    frames = [mtdata2(pc % 65536, stf % 2**32, (0, 0, 9.8), (0, 0, 0))
              for pc, stf in [(65534, 2**32 - 200), (65535, 2**32 - 100), (65536, 2**32),
                              (65537, 2**32 + 100)]]
    out = XbusParser().feed(b"".join(frames))
    assert [s.counter for s in out] == [65534, 65535, 65536, 65537]
    ts = [s.t_sensor_ns for s in out]
    assert [b - a for a, b in zip(ts, ts[1:])] == [10_000_000] * 3


def test_stf_modulus_one_day():
    day = 864_000_000
    p = XbusParser(stf_modulus=day)
    out = p.feed(mtdata2(0, day - 100, (0, 0, 0), (0, 0, 0)) + mtdata2(1, 0, (0, 0, 0), (0, 0, 0)))
    assert out[1].t_sensor_ns - out[0].t_sensor_ns == 10_000_000
    assert p.stats.clock_resets == 0


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.integers(1, 300), min_size=1, max_size=60))
def test_chunked_feed_equals_whole(cuts):
    stream = VENDOR + b"".join(
        mtdata2(i, 1000 * i, (i * 0.5, -1.0, 9.8), (0.01 * i, 0.0, -0.5), (0.1, 0.2, 0.3))
        for i in range(20)) + X3
    whole = XbusParser().feed(stream)
    p = XbusParser()
    got, pos, k = [], 0, 0
    while pos < len(stream):
        n = cuts[k % len(cuts)]
        got += p.feed(stream[pos:pos + n])
        pos, k = pos + n, k + 1
    assert got == whole and len(whole) == 22
    assert p.stats.as_dict() == XbusParser().stats.as_dict() | {
        "bytes_in": len(stream), "frames_ok": 22, "samples": 22, "clock_resets": 1}
    assert all(math.isfinite(v) for s in got for v in s.acc)
