"""Movella DOT protocol tests: section 1.8 vectors, length rules, clock, control codecs."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from drivers.ble import movella_dot_protocol as dot
from drivers.ble.movella_dot_protocol import DotPayloadDecoder

D1 = bytes.fromhex(
    "40 42 0F 00 00 00 00 3F 00 00 A0 BF 00 00 1D 41 00 00 20 41 00 00 20 C0 00 00 00 00")
M20 = D1 + bytes.fromhex("00 08 00 FC 00 10")
M26 = bytes.fromhex(
    "40 42 0F 00 00 00 80 3F 00 00 00 00 00 00 00 00 00 00 00 00"
    "00 00 00 3F 00 00 A0 BF 00 00 1D 41 00 00 20 41 00 00 20 C0 00 00 00 00")
GYR_RAD = (10 * math.pi / 180, -2.5 * math.pi / 180, 0.0)


def test_d1_mode21_decode():
    assert struct.pack("<I3f3f", 1_000_000, 0.5, -1.25, 9.8125, 10.0, -2.5, 0.0) == D1
    d = DotPayloadDecoder(21)
    (s,) = d.feed(D1)
    assert s.t_sensor_ns == 1_000_000_000 and s.counter == -1
    assert s.acc == (0.5, -1.25, 9.8125)
    assert s.gyr == pytest.approx(GYR_RAD) and s.gyr == pytest.approx((0.174533, -0.043633, 0.0),
                                                                     abs=1e-6)
    assert s.mag is None and s.extra is None


def test_d2_truncated_is_length_error_then_continues():
    d = DotPayloadDecoder(21)
    assert d.feed(D1[:20]) == []
    assert d.stats.length_errors == 1 and d.stats.frames_ok == 0
    assert len(d.feed(D1)) == 1


def test_padding_is_ignored():
    d = DotPayloadDecoder(21)
    (s,) = d.feed(D1 + bytes(12))
    assert s.acc == (0.5, -1.25, 9.8125) and d.stats.length_errors == 0


def test_mode20_mag_and_mode26_quat():
    (s,) = DotPayloadDecoder(20).feed(M20)
    assert s.mag == (0.5, -0.25, 1.0) and s.gyr == pytest.approx(GYR_RAD)
    (q,) = DotPayloadDecoder(26).feed(M26)
    assert q.extra == {"quat": (1.0, 0.0, 0.0, 0.0)}
    assert q.acc == (0.5, -1.25, 9.8125) and q.gyr == pytest.approx(GYR_RAD)
    assert DotPayloadDecoder(20).feed(M20[:33]) == []
    assert [dot.payload_size(m) for m in (20, 21, 26)] == [34, 28, 44]
    assert dot.payload_characteristic(26) == dot.LONG_PAYLOAD


def test_unsupported_mode_rejected():
    with pytest.raises(ValueError, match="mode 4"):
        DotPayloadDecoder(4)


def test_clock_wraps_at_u32_us_and_reports_reboot():
    d = DotPayloadDecoder(21, rate_hz=60)
    ts = [2**32 - 20000, (2**32 - 20000 + 16667) % 2**32, 13334, 13334 + 2 * 16667, 500]
    out = [d.feed(struct.pack("<I", t) + D1[4:])[0].t_sensor_ns for t in ts]
    assert out[1] - out[0] == 16_667_000 and out[2] - out[1] == 16_667_000  # across the wrap
    assert d.gaps == 1  # the 2-period jump
    assert d.stats.clock_resets == 1 and out[4] > out[3]


def test_control_bytes():
    assert dot.start_measurement(21) == bytes.fromhex("01 01 15")  # D3
    assert dot.stop_measurement(21) == bytes.fromhex("01 00 15")
    assert dot.start_measurement(dot.PayloadMode.CUSTOM_MODE_5) == bytes.fromhex("01 01 1A")
    assert dot.heading_reset() == b"\x01\x00" and dot.heading_revert() == b"\x07\x00"


def test_set_output_rate_d4_and_read_modify_write():
    want = bytearray(32)
    want[0], want[24], want[25] = 0x10, 0x1E, 0x00
    assert dot.set_output_rate(None, 30) == bytes(want)  # D4
    current = bytearray(range(32))
    new = dot.set_output_rate(current, 60)
    assert new[0] == 0x10 and new[24:26] == b"\x3c\x00"
    assert new[1:24] == current[1:24] and new[26:] == current[26:]
    assert dot.output_rate_of(new) == 60
    with pytest.raises(ValueError, match="120"):
        dot.set_output_rate(None, 120)
    with pytest.raises(ValueError, match="32 bytes"):
        dot.set_output_rate(b"\x00" * 10, 30)
    assert dot.identify()[:2] == b"\x01\x01" and len(dot.identify()) == 32
    assert dot.power_off()[:3] == b"\x02\x00\x01" and len(dot.power_off()) == 32


def test_battery_and_report():
    assert dot.decode_battery(bytes.fromhex("5A 01")) == dot.BatteryStatus(90, True)
    with pytest.raises(ValueError):
        dot.decode_battery(b"\x5a")
    assert dot.decode_report(bytes.fromhex("05 04 40 E2 01 00") + bytes(30)) == (5, 123456)
    assert dot.decode_report(b"\x01" + bytes(35)) == (1, None)


def test_device_info_vector():
    info = dot.decode_device_info(bytes.fromhex(
        "81 4B 00 CD 22 D4 02 06 00 E7 07 07 0E 0A 14 1E 48 E3 6A 00 81 4B 00 00 00 22 D4 00"
        "58 53 2D 54 30 32"))
    assert info.mac == "D4:22:CD:00:4B:81" and info.firmware == (2, 6, 0)
    assert info.build == (2023, 7, 14, 10, 20, 30) and info.softdevice_version == 7005000
    assert info.serial_number == 0x00D4220000004B81 and info.product_code == "XS-T02"
    with pytest.raises(ValueError, match="34 bytes"):
        dot.decode_device_info(b"\x00" * 20)


def test_uuids():
    assert dot.MEDIUM_PAYLOAD == "15172003-4947-11e9-8646-d663bd873d93"
    assert dot.CONTROL == "15172001-4947-11e9-8646-d663bd873d93"
    assert dot.BATTERY == "15173001-4947-11e9-8646-d663bd873d93"


@settings(max_examples=200, deadline=None)
@given(hs.binary(max_size=80), hs.sampled_from([20, 21, 26]))
def test_random_notifications_never_raise(data, mode):
    d = DotPayloadDecoder(mode)
    out = d.feed(data)
    assert len(out) == (1 if len(data) >= d.size else 0)
    assert d.stats.length_errors == (0 if out else 1)
