"""WitMotion WT901 family serial protocol: 11-byte `55 TYPE D0..D3 SUM` frames (pure, no I/O).

See docs/hardware-protocols.md section 3.1-3.2. Values are i16 little-endian; the
checksum is the low byte of the sum of bytes 0..9.
"""

from __future__ import annotations

import calendar
import logging
import math
import struct

from drivers.imu_sample import ImuSample
from drivers.parse_stats import ParseStats

_log = logging.getLogger("imuflow.witmotion")

G0 = 9.80665
ACC_SCALE = 16.0 / 32768.0 * G0  # m/s^2 per count (default +-16 g range)
GYR_SCALE = 2000.0 / 32768.0 * math.pi / 180.0  # rad/s per count (default +-2000 deg/s)
ANGLE_SCALE = math.pi / 32768.0  # rad per count (180 deg full scale)
QUAT_SCALE = 1.0 / 32768.0

HEADER = 0x55
T_TIME, T_ACC, T_GYR, T_ANGLE, T_MAG, T_QUAT, T_REG = 0x50, 0x51, 0x52, 0x53, 0x54, 0x59, 0x5F
KNOWN_TYPES = frozenset(range(0x50, 0x5C)) | {0x5F}
_DECODED = frozenset((T_TIME, T_ACC, T_GYR, T_ANGLE, T_MAG, T_QUAT))
FRAME_LEN = 11
_I4 = struct.Struct("<4h")
_TIME = struct.Struct("<6BH")

RATE_CODES_HZ = {0.2: 0x01, 0.5: 0x02, 1: 0x03, 2: 0x04, 5: 0x05, 10: 0x06, 20: 0x07,
                 50: 0x08, 100: 0x09, 200: 0x0B}
RSW_TIME, RSW_ACC, RSW_GYR, RSW_ANGLE, RSW_MAG, RSW_QUAT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x200


def command(addr: int, value: int) -> bytes:
    """Register write/command `FF AA ADDR DATAL DATAH` (value as u16 LE)."""
    return bytes((0xFF, 0xAA, addr & 0xFF, value & 0xFF, (value >> 8) & 0xFF))


def unlock() -> bytes:
    """Unlock register writes for about 10 s: `FF AA 69 88 B5`."""
    return command(0x69, 0xB588)


def save() -> bytes:
    """Save the configuration: `FF AA 00 00 00`."""
    return command(0x00, 0x0000)


def set_rate(rate_hz: float) -> bytes:
    """Set the serial output rate (RRATE 0x03); rate_hz must be a documented code."""
    code = RATE_CODES_HZ.get(rate_hz)
    if code is None:
        raise ValueError(f"WitMotion serial rate {rate_hz} Hz not one of {sorted(RATE_CODES_HZ)}")
    return command(0x03, code)


def set_content(mask: int = RSW_ACC | RSW_GYR | RSW_ANGLE | RSW_MAG) -> bytes:
    """Select output frames (RSW 0x02), default acc+gyro+angle+mag = 0x001E."""
    return command(0x02, mask)


def read_register(addr: int) -> bytes:
    """Read four registers from addr: `FF AA 27 ADDR 00` (reply type 0x5F)."""
    return command(0x27, addr)


class WitSerialParser:
    """Incremental WT901 serial parser; emits one `ImuSample` per acc+gyro set.

    A set is the run of frame types of one output cycle (time, acc, gyro, angle,
    mag, quaternion come in increasing type order); it is emitted when its last
    type arrives (learned from the last complete cycle), when a new cycle starts, or
    when bytes were discarded (a set never mixes frames from both sides of a gap).
    Output: `acc` m/s^2 (g0 = 9.80665, +-16 g range), `gyr` rad/s (+-2000 deg/s
    range), `mag` raw counts a.u. (None without a 0x54 frame), sensor frame;
    `t_sensor_ns` from the 0x50 time frame (UTC-naive RTC date -> ns since 1970)
    or -1; `counter` -1. `extra`: `temperature_c`, `euler_rad` (roll, pitch, yaw,
    Z-Y-X), `quat` (w, x, y, z), `firmware_version`. The last register reply
    (0x5F, four u16) is kept in `last_register_reply`.
    """

    def __init__(self) -> None:
        self.stats = ParseStats()
        self.last_register_reply: tuple[int, ...] | None = None
        self._buf = bytearray()
        self._set: dict[int, tuple] = {}
        self._prev_type = -1
        self._cycle_last = -1
        self._synced = True
        self._broken = False

    def _discard(self, n: int) -> None:
        self._broken = bool(self._set)  # frames after lost bytes must not join the open set
        self.stats.bytes_discarded += n
        if self._synced:
            self.stats.resyncs += 1
            self._synced = False

    def feed(self, data: bytes) -> list[ImuSample]:
        """Append received bytes; return the samples completed by them."""
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[ImuSample] = []
        end = len(buf)
        pos = 0
        find = buf.find
        while True:
            i = find(b"\x55", pos)
            if i < 0:
                if end > pos:
                    self._discard(end - pos)
                pos = end
                break
            if i > pos:
                self._discard(i - pos)
            pos = i
            if end - i < 2:
                break
            typ = buf[i + 1]
            if typ not in KNOWN_TYPES:
                self._discard(1)
                pos = i + 1
                continue
            if end - i < FRAME_LEN:
                break
            if sum(buf[i:i + 10]) & 0xFF != buf[i + 10]:
                st.checksum_errors += 1
                self._discard(1)
                pos = i + 1
                continue
            st.frames_ok += 1
            self._synced = True
            pos = i + FRAME_LEN
            if typ in _DECODED:
                self._on_frame(typ, buf, i + 2, out)
            elif typ == T_REG:
                self._on_registers(buf, i + 2)
            else:
                st.unknown_type += 1
        if pos:
            del buf[:pos]
        st.samples += len(out)
        return out

    def _on_registers(self, buf: bytearray, off: int) -> None:
        # the reply does not carry its start address; the driver knows what it asked for
        self.last_register_reply = struct.unpack_from("<4H", buf, off)

    def _on_frame(self, typ: int, buf: bytearray, off: int, out: list[ImuSample]) -> None:
        if self._set and (self._broken or typ <= self._prev_type):
            # a new cycle starts (or bytes were lost): close the set, never mix cycles;
            # learn the cycle's last type only from a complete, contiguous set
            if not self._broken and T_ACC in self._set and T_GYR in self._set:
                self._cycle_last = self._prev_type
            self._flush(out)
        self._set[typ] = (_TIME if typ == T_TIME else _I4).unpack_from(buf, off)
        self._prev_type = typ
        if typ == self._cycle_last:
            self._flush(out)

    def _flush(self, out: list[ImuSample]) -> None:
        s = self._set
        self._set = {}
        self._broken = False
        acc = s.get(T_ACC)
        gyr = s.get(T_GYR)
        if acc is None or gyr is None:
            self.stats.samples_incomplete += 1
            return
        t = -1
        tm = s.get(T_TIME)
        if tm is not None:
            try:
                sec = calendar.timegm((2000 + tm[0], tm[1], tm[2], tm[3], tm[4], tm[5]))
                if not (1 <= tm[1] <= 12 and 1 <= tm[2] <= 31 and tm[6] < 1000):
                    raise ValueError(f"time frame fields out of range: {tm}")
                t = sec * 1_000_000_000 + tm[6] * 1_000_000
            except (ValueError, OverflowError) as exc:
                self.stats.parse_errors += 1
                _log.debug("bad WitMotion time frame: %s", exc)
        extra = {"temperature_c": acc[3] / 100.0}
        ang = s.get(T_ANGLE)
        if ang is not None:
            extra["euler_rad"] = (ang[0] * ANGLE_SCALE, ang[1] * ANGLE_SCALE, ang[2] * ANGLE_SCALE)
            extra["firmware_version"] = ang[3] & 0xFFFF
        q = s.get(T_QUAT)
        if q is not None:
            extra["quat"] = (q[0] * QUAT_SCALE, q[1] * QUAT_SCALE, q[2] * QUAT_SCALE,
                             q[3] * QUAT_SCALE)
        m = s.get(T_MAG)
        out.append(ImuSample(
            t, -1,
            (acc[0] * ACC_SCALE, acc[1] * ACC_SCALE, acc[2] * ACC_SCALE),
            (gyr[0] * GYR_SCALE, gyr[1] * GYR_SCALE, gyr[2] * GYR_SCALE),
            (float(m[0]), float(m[1]), float(m[2])) if m is not None else None,
            extra,
        ))

    def flush(self) -> list[ImuSample]:
        """Emit the pending set now (end of stream); empty list if none is complete."""
        out: list[ImuSample] = []
        if self._set:
            self._flush(out)
        self.stats.samples += len(out)
        return out
