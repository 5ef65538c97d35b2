"""imuflow `$IMU` line protocol tests: doc vectors C1/C2, receiver rules, chunking, unwrap."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from drivers.serial.line_protocol import LineParser, format_line, xor_checksum

C1 = b"$IMU,imu01,1234567,0.1200,-0.0500,9.8100,0.0010,-0.0020,0.0300*17\r\n"
C2 = b"$IMU,imu01,1234567,0.1200,-0.0500,9.8700,0.0010,-0.0020,0.0300*17\r\n"


def test_c1_bytes_and_decode():
    assert C1 == bytes.fromhex(
        "24 49 4D 55 2C 69 6D 75 30 31 2C 31 32 33 34 35 36 37 2C 30 2E 31 32 30 30 2C"
        "2D 30 2E 30 35 30 30 2C 39 2E 38 31 30 30 2C 30 2E 30 30 31 30 2C 2D 30 2E 30"
        "30 32 30 2C 30 2E 30 33 30 30 2A 31 37 0D 0A")
    assert format_line("imu01", 1234567, (0.12, -0.05, 9.81), (0.001, -0.002, 0.03)) == C1
    p = LineParser()
    (s,) = p.feed(C1)
    assert s.t_sensor_ns == 1_234_567_000 and s.counter == -1
    assert s.acc == (0.12, -0.05, 9.81) and s.gyr == (0.001, -0.002, 0.03)
    assert s.mag is None and s.extra == {"sensor_id": "imu01"}
    assert p.stats.frames_ok == 1


def test_c2_checksum_error_and_neighbours_survive():
    p = LineParser()
    out = p.feed(C1 + C2 + C1.replace(b"1234567", b"1244567").replace(b"*17", b"*%02X" % 0x17))
    assert p.stats.checksum_errors >= 1 and len(out) >= 1
    p = LineParser()
    assert len(p.feed(C2 + format_line("imu01", 5, (0, 0, 9.8), (0, 0, 0)))) == 1
    assert p.stats.checksum_errors == 1


@pytest.mark.parametrize("body", [b"", b"A", b"IMU,x", bytes(range(256)), b"\xff" * 77])
def test_xor_checksum_matches_reduce(body):
    assert xor_checksum(body) == reduce(lambda a, b: a ^ b, body, 0)


def test_receiver_rules():
    p = LineParser()
    lines = [
        b"# header line\r\n",
        b"hello debug print\n",
        b"\r\n",
        b"$IMU,imu01,10,1,2,3,4,5,6\r\n",                      # no checksum, required
        b"$IMU,imu01,10,1,2,3,4,5*" + b"%02X" % xor_checksum(b"IMU,imu01,10,1,2,3,4,5") + b"\n",
        b"$IMU,bad id,10,1,2,3,4,5,6*" + b"%02X" % xor_checksum(b"IMU,bad id,10,1,2,3,4,5,6")
        + b"\n",
        b"$IMU,a,11,1,2,nan,4,5,6*" + b"%02X" % xor_checksum(b"IMU,a,11,1,2,nan,4,5,6") + b"\n",
        b"$IMU,a,12,1,2,3,4,5,6*zz\n",
        b"$IMU,a," + b"9" * 140 + b"\n",                        # overlong
        format_line("a", 13, (1, 2, 3), (4, 5, 6)).lower(),     # `$imu` is not the tag
    ]
    out = p.feed(b"".join(lines))
    st = p.stats
    assert p.comments == 1 and st.unknown_type == 2
    assert st.checksum_errors == 2  # missing `*hh` while required, and `*zz`
    assert st.length_errors == 2 and st.parse_errors == 2
    assert out == []


def test_lowercase_hex_digits_accepted():
    line = format_line("a", 13, (1, 2, 3), (4, 5, 6))
    star = line.index(b"*")
    assert len(LineParser().feed(line[:star] + line[star:].lower())) == 1


def test_checksum_optional_mode():
    p = LineParser(checksum_required=False)
    (s,) = p.feed(b"$IMU,imu02,10,1,2,3,4,5,6\n")
    assert s.acc == (1.0, 2.0, 3.0) and s.extra["sensor_id"] == "imu02"


def test_overlong_line_without_newline_is_skipped_across_feeds():
    p = LineParser()
    assert p.feed(b"$IMU," + b"1" * 200) == []
    assert p.feed(b"2" * 50) == []
    out = p.feed(b"\n" + C1)
    assert len(out) == 1 and p.stats.length_errors == 1


def test_time_unwrap_per_sensor_and_backsteps():
    p = LineParser()
    stream = b"".join([
        format_line("a", 2**32 - 1000, (0, 0, 0), (0, 0, 0)),
        format_line("b", 5, (0, 0, 0), (0, 0, 0)),
        format_line("a", 1000, (0, 0, 0), (0, 0, 0)),     # wrapped: +2000 us
        format_line("a", 1000, (0, 0, 0), (0, 0, 0)),     # not increasing: counted, kept
        format_line("a", 10, (0, 0, 0), (0, 0, 0)),       # backwards: reset, counted, kept
    ])
    out = p.feed(stream)
    ta = [s.t_sensor_ns for s in out if s.extra["sensor_id"] == "a"]
    assert ta[1] - ta[0] == 2_000_000 and ta[2] == ta[1]
    assert ta[3] > ta[2]  # output stays monotonic across a reset
    assert p.stats.time_backsteps == 2 and p.stats.clock_resets == 1 and len(out) == 5


@settings(max_examples=50, deadline=None)
@given(hs.lists(hs.integers(1, 90), min_size=1, max_size=30))
def test_chunked_equals_whole(cuts):
    stream = b"# start\r\n" + b"".join(
        format_line("s%d" % (i % 3), 1000 * i, (i * 0.25, -1, 9.81), (0.5, -0.5, i * 1e-3))
        for i in range(40))
    whole = LineParser().feed(stream)
    p = LineParser()
    got, pos, k = [], 0, 0
    while pos < len(stream):
        got += p.feed(stream[pos:pos + cuts[k % len(cuts)]])
        pos += cuts[k % len(cuts)]
        k += 1
    assert got == whole and len(got) == 40


def test_values_beyond_float32_or_absurd_are_parse_errors():
    """The report's 1e308 (stored as inf in float32): refused like NaN, counted."""
    p = LineParser()
    good = format_line("a", 10, (0.0, 0.0, 9.8), (0.1, 0.0, 0.0))
    big = b"IMU,a,20,1e308,0,9.8,0,0,0"  # as a board printing %g would send it
    out = p.feed(good + b"$" + big + b"*%02X\r\n" % xor_checksum(big)
                 + format_line("a", 30, (0.0, 0.0, 9.8), (0.0, -2e6, 0.0)) + good)
    assert len(out) == 2 and p.stats.parse_errors == 2


def test_sensor_ids_per_board_are_capped(caplog):
    from drivers.serial.line_protocol import MAX_SENSORS
    p = LineParser()
    data = b"".join(format_line(f"s{i}", 10, (0.0, 0.0, 9.8), (0.0, 0.0, 0.0))
                    for i in range(MAX_SENSORS + 10))
    out = p.feed(data)
    assert len({s.extra["sensor_id"] for s in out}) == MAX_SENSORS
    assert p.stats.parse_errors == 10
    assert caplog.text.count(f"more than {MAX_SENSORS} sensor ids") == 1
