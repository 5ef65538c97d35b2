"""Robustness of all stream parsers: random bytes, truncation, bit flips, 1 % corruption.

Streams are built from known frames so that it is known exactly which frames are
intact. Frames are chosen so that their payloads never contain a preamble byte;
a single changed byte per frame is then always caught by the checksum, so no
sample may come from a corrupted frame.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from drivers.ble.witmotion_ble_protocol import WitBleParser
from drivers.serial.line_protocol import LineParser, format_line
from drivers.serial.witmotion import WitSerialParser
from drivers.serial.xbus import XbusParser, build_message

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Proto:
    """A protocol under test: frame builder, parser factory, bytes a corruption must avoid."""

    name: str
    frame: Callable[[int], bytes]  # index -> frame bytes (one sample per frame)
    parser: Callable[[], object]
    avoid: frozenset  # preamble bytes that must not appear inside frames or be created
    tail: bytes = b""  # bytes fed at end of stream so pending candidates resolve
    marks: int = 1  # preamble/terminator bytes a clean frame holds (at its frame starts/end)

    def key(self, s) -> tuple:
        return (s.acc, s.gyr)


def _xbus(i: int) -> bytes:
    data = struct.pack(">HBH", 0x1020, 2, i & 0xFFFF) + struct.pack(">HBI", 0x1060, 4, 100 * i)
    data += struct.pack(">HB3f", 0x4020, 12, 0.5 + i, -1.25, 9.8125)
    data += struct.pack(">HB3f", 0x8020, 12, 0.125, -0.0625 * (i % 7), 0.25)
    return build_message(0x36, data)


def _wit_frame(typ: int, *v: int) -> bytes:
    body = bytes((0x55, typ)) + struct.pack("<4h", *v)
    return body + bytes((sum(body) & 0xFF,))


def _wit(i: int) -> bytes:  # one sample = acc frame + gyro frame
    return _wit_frame(0x51, 1000 + i, -512, 2048, 2500) + _wit_frame(0x52, 4096, -i, 7, 0)


def _line(i: int) -> bytes:
    return format_line("imu%d" % (i % 4), 1000 * i, (0.25 * i, -1.0, 9.81), (0.001 * i, 0.5, -0.5))


def _wit_ble(i: int) -> bytes:
    return b"\x55\x61" + struct.pack("<9h", 1000 + i, -512, 2048, 4096, -i, 7, 0, 0, 0)


def _clean(proto, n):
    """First n frames that hold no preamble byte except their own frame starts/terminator."""
    out, i = [], 0
    while len(out) < n:
        f = proto.frame(i)
        if sum(b in proto.avoid for b in f) == proto.marks:
            out.append(f)
        i += 1
        assert i < 50 * n + 100, f"{proto.name}: cannot build clean frames"
    return out


XBUS = Proto("xbus", _xbus, XbusParser, frozenset({0xFA}), build_message(0x31) * 60)
WIT = Proto("witmotion", _wit, WitSerialParser, frozenset({0x55}), marks=2)
LINE = Proto("line", _line, LineParser, frozenset({ord("\n")}))
PROTOS = [XBUS, WIT, LINE]


def _feed_all(parser, data: bytes, cuts: list[int]) -> list:
    out, pos, k = [], 0, 0
    while pos < len(data):
        n = cuts[k % len(cuts)]
        out += parser.feed(data[pos:pos + n])
        pos, k = pos + n, k + 1
    if hasattr(parser, "flush"):
        out += parser.flush()
    return out


@pytest.mark.parametrize("proto", PROTOS + [Proto("wit_ble", _wit_ble,
                                                  lambda: WitBleParser(stream_mode=True),
                                                  frozenset())], ids=lambda p: p.name)
@FUZZ
@given(data=hs.binary(max_size=3000), cuts=hs.lists(hs.integers(1, 700), min_size=1, max_size=8))
def test_random_bytes_never_raise(proto, data, cuts):
    p = proto.parser()
    out = _feed_all(p, data, cuts)
    st = p.stats.as_dict()
    assert st["bytes_in"] == len(data) and st["samples"] == len(out)
    assert all(v >= 0 for v in st.values())


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
@FUZZ
@given(n=hs.integers(3, 40), rnd=hs.randoms(use_true_random=False),
       cuts=hs.lists(hs.integers(1, 300), min_size=1, max_size=8))
def test_bit_flips_and_truncation_never_emit_bad_frames(proto, n, rnd, cuts):
    frames = _clean(proto, n)
    expected = [proto.key(s) for s in _feed_all(proto.parser(), b"".join(frames), [10**9])]
    assert len(expected) == n  # the clean stream decodes completely
    stream, intact = bytearray(), []
    for f, key in zip(frames, expected):
        f = bytearray(f)
        kind = rnd.random()
        if kind < 0.25:  # flip bits of one byte, never creating a preamble byte
            j = rnd.randrange(len(f))
            mask = rnd.randrange(1, 256)
            while f[j] ^ mask in proto.avoid:
                mask = rnd.randrange(1, 256)
            f[j] ^= mask
        elif kind < 0.35:  # truncated frame
            f = f[:rnd.randrange(1, len(f))]
        else:
            intact.append(key)
        if rnd.random() < 0.2:  # junk between frames, without preamble bytes
            stream += bytes(b for b in rnd.randbytes(rnd.randrange(1, 20)) if b not in proto.avoid)
        stream += f
    p = proto.parser()
    got = [proto.key(s) for s in _feed_all(p, bytes(stream) + proto.tail, cuts)]
    assert set(got) <= set(intact), "a sample came from a corrupted or truncated frame"
    assert sorted(got) == sorted(intact), "an intact frame was lost"


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_one_percent_corruption_recovers_99_percent(proto):
    rng = random.Random(1234)
    n = 4000
    frames = [proto.frame(i) for i in range(n)]
    keys = [proto.key(s) for s in _feed_all(proto.parser(), b"".join(frames), [10**9])]
    assert len(keys) == n
    stream = bytearray(b"".join(frames))
    bounds, pos = [], 0
    for f in frames:
        bounds.append((pos, pos + len(f)))
        pos += len(f)
    bad = sorted(rng.sample(range(len(stream)), len(stream) // 100))
    for j in bad:
        stream[j] ^= rng.randrange(1, 256)
    badset = set(bad)
    intact = {k for k, (a, b) in zip(keys, bounds) if not any(x in badset for x in range(a, b))}
    p = proto.parser()
    cuts = [rng.choice([64, 128, 256, 1024, 4096]) for _ in range(50)]
    got = {proto.key(s) for s in _feed_all(p, bytes(stream) + proto.tail, cuts)}
    recovered = len(intact & got)
    assert 0.3 * n < len(intact) < n
    assert recovered >= 0.99 * len(intact), (recovered, len(intact), p.stats.as_dict())
    assert len(got - intact) <= 0.002 * n, "too many samples from corrupted frames"


@FUZZ
@given(start=hs.integers(0, 2**16 - 1),
       steps=hs.lists(hs.integers(-2**16, 2**15), min_size=1, max_size=60))
def test_clock_unwrap_monotonic_and_exact_for_forward_steps(start, steps):
    from drivers.clock_unwrap import ClockUnwrap
    c = ClockUnwrap(2**16, 1000)
    raw = start
    prev = c.update(raw)
    assert prev == start * 1000
    for d in steps:
        raw = (raw + d) % 2**16
        ns = c.update(raw)
        fwd = d % 2**16
        if fwd <= 2**15:  # forward (possibly across the wrap): exact elapsed time
            assert ns - prev == fwd * 1000 and not c.last_was_reset
        else:
            assert c.last_was_reset and ns > prev  # reported, output still increases
        prev = ns
