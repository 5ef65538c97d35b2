"""Parsers behind real pyserial transports: `loop://` URL and a pseudo-terminal pair."""

from __future__ import annotations

import os
import random
import struct
import sys
import threading
import time

import pytest
import serial

from drivers.serial.line_protocol import LineParser, format_line
from drivers.serial.witmotion import WitSerialParser
from drivers.serial.xbus import XbusParser, build_message


def _xbus_stream(n: int) -> bytes:
    return b"".join(build_message(0x36, struct.pack(">HBH", 0x1020, 2, i)
                                  + struct.pack(">HB3f", 0x4020, 12, i, 0.0, 9.81)
                                  + struct.pack(">HB3f", 0x8020, 12, 0.0, 0.1, 0.0))
                    for i in range(n))


def _wit_stream(n: int) -> bytes:
    def frame(typ, *v):
        body = bytes((0x55, typ)) + struct.pack("<4h", *v)
        return body + bytes((sum(body) & 0xFF,))
    return b"".join(frame(0x51, i, 0, 2048, 2500) + frame(0x52, 0, i, 0, 0) for i in range(n))


def _line_stream(n: int) -> bytes:
    return b"".join(format_line("imu01", 1000 * i, (i, 0, 9.81), (0, 0, 0.1)) for i in range(n))


CASES = [("xbus", _xbus_stream, XbusParser), ("witmotion", _wit_stream, WitSerialParser),
         ("line", _line_stream, LineParser)]


def _drain(port: serial.SerialBase, parser, total: int, rng: random.Random) -> list:
    out, got, deadline = [], 0, time.monotonic() + 10.0
    while got < total and time.monotonic() < deadline:
        chunk = port.read(rng.choice([1, 7, 64, 256, 1024]))
        got += len(chunk)
        out += parser.feed(chunk)
    if hasattr(parser, "flush"):
        out += parser.flush()
    assert got == total, f"read {got} of {total} bytes before the deadline"
    return out


def _expected(parser_cls, stream: bytes) -> list:
    p = parser_cls()
    return p.feed(stream) + (p.flush() if hasattr(p, "flush") else [])


@pytest.mark.parametrize("name,make,parser_cls", CASES, ids=[c[0] for c in CASES])
def test_loop_url_round_trip(name, make, parser_cls):
    stream = make(300)
    # loop:// holds at most 4096 bytes, so a writer thread feeds it while we read
    port = serial.serial_for_url("loop://", timeout=0.05, write_timeout=5)

    def writer() -> None:
        rng = random.Random(11)
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, 700)
            port.write(stream[pos:pos + n])
            pos += n

    t = threading.Thread(target=writer, daemon=True)
    try:
        t.start()
        out = _drain(port, parser_cls(), len(stream), random.Random(7))
        t.join(5)
    finally:
        port.close()
    assert len(out) == 300 and out == _expected(parser_cls, stream)
    assert [s.acc[0] for s in out[:3]] != [out[0].acc[0]] * 3  # distinct samples, in order


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo terminal")
@pytest.mark.parametrize("name,make,parser_cls", CASES, ids=[c[0] for c in CASES])
def test_pty_pair_carries_stream(name, make, parser_cls):
    stream = make(500)
    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave), baudrate=115200, timeout=0.05)  # sets raw mode

    def writer() -> None:
        rng = random.Random(3)
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, 512)
            pos += os.write(master, stream[pos:pos + n])

    t = threading.Thread(target=writer, daemon=True)
    try:
        t.start()
        out = _drain(port, parser_cls(), len(stream), random.Random(5))
        t.join(5)
    finally:
        port.close()
        os.close(master)
        os.close(slave)
    assert len(out) == 500 and out == _expected(parser_cls, stream)
