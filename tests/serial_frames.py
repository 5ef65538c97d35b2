"""Byte streams for serial driver tests, built from the protocol docs (not from driver code)."""

from __future__ import annotations

import struct

import numpy as np

from drivers.serial import xbus
from drivers.serial.line_protocol import format_line


def mti_frame(k: int, acc: tuple[float, float, float] | None = None,
              gyr: tuple[float, float, float] | None = None) -> bytes:
    """MTData2 frame number ``k``: PacketCounter k, SampleTimeFine k*100 (10 ms), acc/gyr f32."""
    acc = acc or (0.01 * k, -0.5, 9.81)
    gyr = gyr or (0.001 * k, 0.2, -0.1)
    data = (struct.pack(">HBH", xbus.ID_PACKET_COUNTER, 2, k % 65536)
            + struct.pack(">HBI", xbus.ID_SAMPLE_TIME_FINE, 4, (k * 100) % 2**32)
            + struct.pack(">HB3f", xbus.ID_ACCELERATION, 12, *acc)
            + struct.pack(">HB3f", xbus.ID_RATE_OF_TURN, 12, *gyr))
    return xbus.build_message(xbus.MID_MTDATA2, data)


def wit_frame(typ: int, values: tuple[int, int, int, int]) -> bytes:
    """One WitMotion 11-byte frame ``55 TYPE D0..D3 SUM`` with four i16 LE values."""
    body = bytes((0x55, typ)) + struct.pack("<4h", *values)
    return body + bytes((sum(body) & 0xFF,))


def wit_sample(k: int) -> bytes:
    """Acc (0x51) + gyro (0x52) + angle (0x53) frames of sample ``k`` (acc x raw = k)."""
    return (wit_frame(0x51, (k % 30000, -1024, 2048, 2500))
            + wit_frame(0x52, (k % 1000, 16, -16, 0))
            + wit_frame(0x53, (0, 0, k % 30000, 0)))


def line_sample(k: int, sensor_id: str = "a") -> bytes:
    """One $IMU line of sample ``k`` (t_us = k * 10000, acc x = k / 1000)."""
    return format_line(sensor_id, k * 10_000, (k / 1000, 0.0, 9.81), (0.0, 0.1, -0.1))


def corrupt(stream: bytes, frame_ends: np.ndarray, p: float,
            seed: int = 1) -> tuple[bytes, np.ndarray]:
    """Flip each byte with probability ``p``; return the bytes and a bool per frame: intact?"""
    rng = np.random.default_rng(seed)
    arr = np.frombuffer(stream, np.uint8).copy()
    hit = rng.random(len(arr)) < p
    arr[hit] ^= rng.integers(1, 256, hit.sum(), dtype=np.uint8)
    starts = np.concatenate([[0], frame_ends[:-1]])
    cum = np.concatenate([[0], np.cumsum(hit)])
    intact = cum[frame_ends] - cum[starts] == 0
    return arr.tobytes(), intact
