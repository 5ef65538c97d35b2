"""WitMotion serial (11-byte frames) and BLE 5.0 (20-byte 0x61/0x71 packets) parser tests."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from drivers.ble import witmotion_ble_protocol as wble
from drivers.ble.witmotion_ble_protocol import WitBleParser
from drivers.serial import witmotion
from drivers.serial.witmotion import WitSerialParser

G0 = 9.80665
D2R = math.pi / 180
ACC = bytes.fromhex("55 51 00 04 00 FE 00 08 C4 09 7D")
GYR = bytes.fromhex("55 52 00 10 00 F8 00 00 00 00 AF")
ANG = bytes.fromhex("55 53 00 40 00 E0 00 60 23 01 4C")
MAG = bytes.fromhex("55 54 68 01 69 00 7A 00 00 00 F5")
BLE_W4 = bytes.fromhex("55 61 00 04 00 FE 00 08 00 10 00 F8 00 00 00 40 00 E0 00 60")


def frame(typ: int, *vals: int) -> bytes:
    """Build an 11-byte serial frame by hand (section 3.1): i16 LE values, SUM of bytes 0..9."""
    body = bytes((0x55, typ)) + struct.pack("<4h", *vals)
    return body + bytes((sum(body) & 0xFF,))


def test_frame_builder_matches_doc_vectors():
    assert frame(0x51, 1024, -512, 2048, 2500) == ACC
    assert frame(0x52, 4096, -2048, 0, 0) == GYR
    assert frame(0x53, 16384, -8192, 24576, 0x0123) == ANG
    assert frame(0x54, 360, 105, 122, 0) == MAG


def test_full_set_decodes_to_si():
    p = WitSerialParser()
    out = p.feed((ACC + GYR + ANG + MAG) * 2)
    assert len(out) == 2  # second cycle emitted on its last type (learned from the first)
    s = out[0]
    assert s.acc == pytest.approx((0.5 * G0, -0.25 * G0, 1.0 * G0))
    assert s.acc == pytest.approx((4.903325, -2.4516625, 9.80665))
    assert s.gyr == pytest.approx((250 * D2R, -125 * D2R, 0.0))
    assert s.mag == (360.0, 105.0, 122.0)
    assert s.extra["temperature_c"] == pytest.approx(25.0)
    assert s.extra["euler_rad"] == pytest.approx((90 * D2R, -45 * D2R, 135 * D2R))
    assert s.extra["firmware_version"] == 0x0123
    assert (s.t_sensor_ns, s.counter) == (-1, -1)
    assert p.stats.frames_ok == 8 and p.stats.samples == 2


def test_checksum_error_w2():
    bad = bytes.fromhex("55 51 00 04 01 FE 00 08 C4 09 7D")
    p = WitSerialParser()
    assert p.feed(bad) == []
    assert p.stats.checksum_errors == 1 and p.stats.frames_ok == 0


def test_resync_w3():
    p = WitSerialParser()
    assert p.feed(bytes.fromhex("00 55 55") + ACC + GYR) == []  # set completes at flush
    (s,) = p.flush()
    assert s.acc == pytest.approx((4.903325, -2.4516625, 9.80665))
    assert p.stats.bytes_discarded == 3 and p.stats.frames_ok == 2
    # 0x55 is itself a documented frame type (port status), so the two `55 55 ..`
    # candidates are rejected by their checksum rather than by the type check.
    assert p.stats.checksum_errors == 2


def test_lost_gyro_frame_counts_incomplete_set_without_mixing():
    p = WitSerialParser()
    out = p.feed(ACC + GYR + ANG + frame(0x51, 1, 2, 3, 0) + ANG + ACC + GYR + ANG)
    assert len(out) == 2 and p.stats.samples_incomplete == 1
    assert out[1].acc == pytest.approx((4.903325, -2.4516625, 9.80665))


def test_time_frame_gives_sensor_time():
    t = bytes((0x55, 0x50, 24, 3, 15, 12, 30, 45)) + struct.pack("<H", 250)
    t += bytes((sum(t) & 0xFF,))
    p = WitSerialParser()
    out = p.feed(t + ACC + GYR + t + ACC + GYR)
    assert len(out) == 2  # first cycle emitted when the second time frame starts a new set
    import calendar
    assert out[0].t_sensor_ns == (calendar.timegm((2024, 3, 15, 12, 30, 45)) * 10**9
                                  + 250 * 10**6)


def test_unknown_and_register_frames():
    p = WitSerialParser()
    p.feed(frame(0x56, 1, 2, 3, 4) + frame(0x5F, 0x1E, 0, 6, 0))
    assert p.stats.unknown_type == 1 and p.last_register_reply == (0x1E, 0, 6, 0)


def test_commands():
    assert witmotion.unlock() == bytes.fromhex("FF AA 69 88 B5")
    assert witmotion.save() == bytes.fromhex("FF AA 00 00 00")
    assert witmotion.set_content() == bytes.fromhex("FF AA 02 1E 00")
    assert witmotion.set_rate(100) == bytes.fromhex("FF AA 03 09 00")
    assert witmotion.read_register(0x03) == bytes.fromhex("FF AA 27 03 00")
    with pytest.raises(ValueError):
        witmotion.set_rate(123)
    assert wble.set_rate(50) == bytes.fromhex("FF AA 03 08 00")


@settings(max_examples=50, deadline=None)
@given(hs.lists(hs.integers(1, 40), min_size=1, max_size=30))
def test_serial_chunked_equals_whole(cuts):
    stream = b"".join(frame(0x51, i, -i, 2048, 2500) + frame(0x52, 3 * i, 0, -i, 0)
                      + frame(0x53, 0, 0, i, 0) for i in range(30))
    whole = WitSerialParser().feed(stream)
    p = WitSerialParser()
    got, pos, k = [], 0, 0
    while pos < len(stream):
        got += p.feed(stream[pos:pos + cuts[k % len(cuts)]])
        pos += cuts[k % len(cuts)]
        k += 1
    assert got == whole and len(got) == 30


# ---------------------------------------------------------------- BLE 5.0

def test_ble_w4_and_real_packet():
    p = WitBleParser()
    (s,) = p.feed(BLE_W4)
    assert s.acc == pytest.approx((4.903325, -2.4516625, 9.80665))
    assert s.gyr == pytest.approx((250 * D2R, -125 * D2R, 0.0))
    assert s.extra["euler_rad"] == pytest.approx((90 * D2R, -45 * D2R, 135 * D2R))
    assert s.mag is None and s.t_sensor_ns == -1
    (r,) = p.feed(bytes.fromhex("55 61 77 02 A8 FE 92 FE 06 02 30 FE CD FF F8 F0 53 FC AB C4"))
    assert [a / G0 for a in r.acc] == pytest.approx((0.3081, -0.1680, -0.1787), abs=1e-4)
    assert [g / D2R for g in r.gyr] == pytest.approx((31.616, -28.320, -3.113), abs=1e-3)
    assert [a / D2R for a in r.extra["euler_rad"]] == pytest.approx(
        (-21.138, -5.169, -83.436), abs=1e-3)


def test_ble_register_reply():
    p = WitBleParser()
    assert p.feed(bytes.fromhex("55 71 3A 00 68 01 69 00 7A 00") + bytes(10)) == []
    assert (p.registers[0x3A], p.registers[0x3B], p.registers[0x3C]) == (360, 105, 122)


def test_ble_packet_mode_counts_partial_notification():
    p = WitBleParser()
    assert p.feed(BLE_W4[:12]) == []
    assert p.stats.length_errors == 1
    assert p.feed(BLE_W4[12:]) == []  # the tail alone has no header
    assert len(p.feed(BLE_W4 * 2)) == 2


def test_ble_stream_mode_joins_notifications():
    p = WitBleParser(stream_mode=True)
    assert p.feed(BLE_W4[:12]) == []
    assert len(p.feed(BLE_W4[12:] + BLE_W4[:5])) == 1
    assert len(p.feed(BLE_W4[5:])) == 1
    assert p.stats.length_errors == 0


def test_ble_bad_flag_drops_one_byte():
    p = WitBleParser()
    out = p.feed(b"\x55\x62" + BLE_W4)
    assert len(out) == 1 and p.stats.bytes_discarded == 2


def test_ble_28_byte_variant_with_time():
    pkt = BLE_W4 + bytes((24, 3, 15, 12, 30, 45)) + struct.pack("<H", 250)
    (s,) = WitBleParser().feed(pkt)
    assert s.extra["rtc"] == (24, 3, 15, 12, 30, 45, 250)
    assert s.acc == pytest.approx((4.903325, -2.4516625, 9.80665))


def test_ble_uuids_use_vendor_base():
    for u in (wble.SERVICE_UUID, wble.NOTIFY_UUID, wble.WRITE_UUID):
        assert u.endswith("-0000-1000-8000-00805f9a34fb") and u == u.lower()
