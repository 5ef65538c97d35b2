"""imuflow line protocol v1 for DIY boards: `$IMU,<id>,<t_us>,ax,ay,az,gx,gy,gz*hh\\r\\n`.

Pure, incremental parser plus a line builder. Specification: docs/line_protocol.md
(and docs/hardware-protocols.md section 4). Acceleration m/s^2, angular rate
rad/s, sensor frame; `t_us` device microseconds, u32 wrap; `*hh` NMEA-style XOR.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from drivers.clock_unwrap import ClockUnwrap
from drivers.imu_sample import ImuSample
from drivers.parse_stats import ParseStats

_log = logging.getLogger("imuflow.line_protocol")

TAG = b"$IMU,"
MAX_VALUE = 1e6  # |acc| m/s^2, |gyr| rad/s beyond this is corruption (float32 holds 3.4e38)
MAX_SENSORS = 64  # sensor ids per board; more is a corrupt or hostile stream
MAX_LINE = 128
N_FIELDS = 9
_ID = re.compile(rb"[A-Za-z0-9_-]{1,16}")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def xor_checksum(body: bytes) -> int:
    """XOR of all bytes of `body` (the text between `$` and `*`), 0..255."""
    n = len(body)
    if n == 0:
        return 0
    x = int.from_bytes(body, "little")
    width = 8
    while width < 8 * n:
        width *= 2
    while width > 8:
        width //= 2
        x = (x ^ (x >> width)) & ((1 << width) - 1)
    return x


def format_line(
    sensor_id: str, t_us: int, acc: Sequence[float], gyr: Sequence[float], digits: int = 4,
    checksum: bool = True,
) -> bytes:
    """Build one line: `acc` m/s^2, `gyr` rad/s (sensor frame), `t_us` device microseconds."""
    vals = ",".join(f"{v:.{digits}f}" for v in (*acc, *gyr))
    body = f"IMU,{sensor_id},{t_us % 2**32},{vals}".encode("ascii")
    if not checksum:
        return b"$" + body + b"\r\n"
    return b"$" + body + b"*%02X\r\n" % xor_checksum(body)


class LineParser:
    """Incremental parser for the `$IMU` line protocol; one `ImuSample` per valid line.

    Output: `acc` m/s^2, `gyr` rad/s, sensor frame; `mag` None; `t_sensor_ns` from
    `t_us` unwrapped per sensor id (u32 wrap, us -> ns); `counter` -1;
    `extra` = {"sensor_id": id}. `#` lines are comments (`comments` counter); other
    non-`$IMU,` lines count as unknown_type.

    Args:
        checksum_required: reject lines without `*hh` (counted as checksum_errors).
        max_line: longest accepted line in bytes (without the terminator).
    """

    def __init__(self, checksum_required: bool = True, max_line: int = MAX_LINE) -> None:
        self.stats = ParseStats()
        self.checksum_required = checksum_required
        self.max_line = max_line
        self.comments = 0
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line: drop up to the next \n
        self._clocks: dict[bytes, ClockUnwrap] = {}
        self._last_ns: dict[bytes, int] = {}
        self._too_many = False  # MAX_SENSORS reached (logged once)

    def feed(self, data: bytes) -> list[ImuSample]:
        """Append received bytes; return the samples of all complete valid lines."""
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[ImuSample] = []
        last = buf.rfind(b"\n")
        if last >= 0:
            lines = bytes(buf[:last]).split(b"\n")
            del buf[:last + 1]
            if self._skipping:  # end of an overlong line; a sentence may start inside it
                self._skipping = False
                k = lines[0].rfind(TAG)
                if k < 0:
                    st.bytes_discarded += len(lines[0]) + 1
                    lines = lines[1:]
            for line in lines:
                self._line(line, out)
        if len(buf) > self.max_line + 1:
            k = buf.rfind(TAG)
            if k > 0 and len(buf) - k <= self.max_line + 1:
                # an unterminated fragment precedes a new sentence: keep the sentence
                st.bytes_discarded += k
                st.resyncs += 1
                del buf[:k]
                self._skipping = False
        if len(buf) > self.max_line + 1:
            if not self._skipping:
                st.length_errors += 1
                st.resyncs += 1
                self._skipping = True
            st.bytes_discarded += len(buf)
            buf.clear()
        st.samples += len(out)
        return out

    def _line(self, line: bytes, out: list[ImuSample]) -> None:
        st = self.stats
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        k = line.rfind(TAG)
        if k > 0:  # a truncated line (e.g. board reset) ran into this one: keep the tail
            st.bytes_discarded += k
            st.resyncs += 1
            line = line[k:]
        if len(line) > self.max_line:
            st.length_errors += 1
            st.bytes_discarded += len(line) + 1
            return
        if not line.startswith(TAG):
            if line.startswith(b"#"):
                self.comments += 1
            else:
                st.unknown_type += 1
            return
        star = line.find(b"*")
        if star >= 0:
            body = line[1:star]
            hh = line[star + 1:]
            if len(hh) != 2 or not _HEX.issuperset(hh) or int(hh, 16) != xor_checksum(body):
                st.checksum_errors += 1
                return
        elif self.checksum_required:
            st.checksum_errors += 1
            return
        else:
            body = line[1:]
        f = body.split(b",")
        if len(f) != N_FIELDS:
            st.length_errors += 1
            return
        sid = f[1]
        try:
            if not _ID.fullmatch(sid):
                raise ValueError(f"bad sensor id {sid!r}")
            t_us = int(f[2])
            if t_us < 0 or not f[2].isdigit():
                raise ValueError(f"bad t_us {f[2]!r}")
            v = [float(x) for x in f[3:]]
            if not all(abs(x) <= MAX_VALUE for x in v):  # NaN fails too
                raise ValueError(f"value beyond +-{MAX_VALUE:g} or not finite in {v}")
        except ValueError as exc:
            st.parse_errors += 1
            _log.debug("unparsable $IMU line %r: %s", line, exc)
            return
        clock = self._clocks.get(sid)
        if clock is None:
            if len(self._clocks) >= MAX_SENSORS:
                st.parse_errors += 1
                if not self._too_many:
                    self._too_many = True
                    _log.warning("more than %d sensor ids on one board (new: %r); lines of "
                                 "further ids are dropped and counted as parse errors",
                                 MAX_SENSORS, sid.decode("ascii"))
                return
            clock = self._clocks[sid] = ClockUnwrap(2**32, 1000)
        t = clock.update(t_us)
        if clock.last_was_reset:
            st.clock_resets += 1
            st.time_backsteps += 1
        elif t <= self._last_ns.get(sid, -1):
            st.time_backsteps += 1
        self._last_ns[sid] = t
        st.frames_ok += 1
        out.append(ImuSample(t, -1, (v[0], v[1], v[2]), (v[3], v[4], v[5]), None,
                             {"sensor_id": sid.decode("ascii")}))
