"""Xsens/Movella MTi Xbus framing and MTData2 decoding (pure, incremental, no I/O).

Frame: ``FA FF MID LEN DATA CS`` or extended ``FA FF MID FF LENH LENL DATA CS``;
the sum of all bytes after the preamble is 0 mod 256; payload values big-endian.
See docs/hardware-protocols.md section 2.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from operator import itemgetter

from drivers.clock_unwrap import ClockUnwrap
from drivers.imu_sample import ImuSample
from drivers.parse_stats import ParseStats

_log = logging.getLogger("imuflow.xbus")

PREAMBLE = 0xFA
BID_MASTER = 0xFF
MID_GOTO_CONFIG = 0x30
MID_GOTO_CONFIG_ACK = 0x31
MID_GOTO_MEASUREMENT = 0x10
MID_GOTO_MEASUREMENT_ACK = 0x11
MID_WAKEUP = 0x3E
MID_WAKEUP_ACK = 0x3F
MID_ERROR = 0x42
MID_SET_OUTPUT_CONFIGURATION = 0xC0
MID_OUTPUT_CONFIGURATION_ACK = 0xC1
MID_MTDATA2 = 0x36

ID_PACKET_COUNTER = 0x1020
ID_SAMPLE_TIME_FINE = 0x1060
ID_TEMPERATURE = 0x0810
ID_QUATERNION = 0x2010
ID_ACCELERATION = 0x4020
ID_RATE_OF_TURN = 0x8020
ID_MAGNETIC_FIELD = 0xC020
ID_STATUS_WORD = 0xE020
FREQ_EVERY_PACKET = 0xFFFF
STF_TICK_NS = 100_000  # SampleTimeFine: 10 kHz ticks

_SYNC = b"\xfa\xff"
# DataID -> (name, struct format of content, tuple arity). f32 (format bits 0) only.
_FIELDS: dict[int, tuple[str, str]] = {
    ID_PACKET_COUNTER: ("pc", "H"),
    ID_SAMPLE_TIME_FINE: ("stf", "I"),
    ID_TEMPERATURE: ("temp", "f"),
    ID_QUATERNION: ("quat", "4f"),
    ID_ACCELERATION: ("acc", "3f"),
    ID_RATE_OF_TURN: ("gyr", "3f"),
    ID_MAGNETIC_FIELD: ("mag", "3f"),
    ID_STATUS_WORD: ("status", "I"),
}
_ARITY = {"H": 1, "I": 1, "f": 1, "3f": 3, "4f": 4}


def build_message(mid: int, data: bytes = b"") -> bytes:
    """Build one Xbus frame (bus id 0xFF) with `data`, choosing extended length if > 254."""
    n = len(data)
    if n <= 254:
        head = bytes((BID_MASTER, mid & 0xFF, n))
    elif n <= 0xFFFF:
        head = bytes((BID_MASTER, mid & 0xFF, 0xFF, n >> 8, n & 0xFF))
    else:
        raise ValueError(f"Xbus payload of {n} bytes exceeds the 65535-byte extended length")
    body = head + bytes(data)
    return b"\xfa" + body + bytes(((-sum(body)) & 0xFF,))


def go_to_config() -> bytes:
    """GoToConfig (MID 0x30): `FA FF 30 00 D1`."""
    return build_message(MID_GOTO_CONFIG)


def go_to_measurement() -> bytes:
    """GoToMeasurement (MID 0x10): `FA FF 10 00 F1`."""
    return build_message(MID_GOTO_MEASUREMENT)


def set_output_configuration(entries: Iterable[tuple[int, int]]) -> bytes:
    """SetOutputConfiguration (MID 0xC0) from (DataID, rate_hz or 0xFFFF) pairs."""
    data = b"".join(struct.pack(">HH", did, rate) for did, rate in entries)
    return build_message(MID_SET_OUTPUT_CONFIGURATION, data)


def set_output_imu(rate_hz: int, with_mag: bool = True) -> bytes:
    """SetOutputConfiguration: counter + SampleTimeFine every packet, acc/gyr(/mag) f32 at rate_hz."""
    if not 1 <= rate_hz <= 0xFFFE:
        raise ValueError(f"Xbus output rate_hz must be 1..65534, got {rate_hz}")
    entries = [
        (ID_PACKET_COUNTER, FREQ_EVERY_PACKET),
        (ID_SAMPLE_TIME_FINE, FREQ_EVERY_PACKET),
        (ID_ACCELERATION, rate_hz),
        (ID_RATE_OF_TURN, rate_hz),
    ]
    if with_mag:
        entries.append((ID_MAGNETIC_FIELD, rate_hz))
    return set_output_configuration(entries)


class _Layout:
    """A compiled MTData2 packet layout: one struct call decodes a whole payload."""

    __slots__ = ("st", "hdr_get", "hdr", "unknown", "ia", "ig", "istf", "ipc", "imag", "extras")

    def __init__(self, payload: bytes | memoryview, n: int) -> None:
        fmt = [">"]
        hdr_pos: list[int] = []
        hdr_vals: list[int] = []
        slots: dict[str, int] = {}
        self.unknown = 0
        pos = 0
        idx = 0
        while pos < n:
            if pos + 3 > n:
                raise ValueError("packet header runs past the payload")
            did, size = struct.unpack_from(">HB", payload, pos)
            fmt.append("HB")
            hdr_pos += [idx, idx + 1]
            hdr_vals += [did, size]
            idx += 2
            field = _FIELDS.get(did)
            if field is not None and struct.calcsize(">" + field[1]) == size:
                name, cfmt = field
                fmt.append(cfmt)
                slots[name] = idx
                idx += _ARITY[cfmt]
            else:
                if field is not None:
                    _log.debug("MTData2 id 0x%04X with unexpected size %d", did, size)
                fmt.append(f"{size}x")
                self.unknown += 1
            pos += 3 + size
        if pos != n:
            raise ValueError(f"MTData2 packets cover {pos} bytes, message length is {n}")
        self.st = struct.Struct("".join(fmt))
        self.hdr_get = itemgetter(*hdr_pos)
        self.hdr = tuple(hdr_vals)
        self.ia, self.ig = slots.get("acc", -1), slots.get("gyr", -1)
        self.istf, self.ipc = slots.get("stf", -1), slots.get("pc", -1)
        self.imag = slots.get("mag", -1)
        # (extra key, value index, arity): quat (w, x, y, z), temperature_c (deg C), status
        self.extras = tuple((key, slots[name], _ARITY[_FIELDS[did][1]])
                            for name, key, did in (("quat", "quat", ID_QUATERNION),
                                                   ("temp", "temperature_c", ID_TEMPERATURE),
                                                   ("status", "status", ID_STATUS_WORD))
                            if name in slots)


class XbusParser:
    """Incremental Xbus stream parser; emits an `ImuSample` per MTData2 with acc and gyr.

    Output: `acc` m/s^2, `gyr` rad/s, `mag` a.u. (normalised to the earth field at
    calibration; not uT), all sensor frame, from the f32 DataIDs 0x4020/0x8020/0xC020.
    `t_sensor_ns` unwraps SampleTimeFine (10 kHz; -1 if absent), `counter` unwraps
    PacketCounter (u16; -1 if absent). `extra` may hold `quat` (w, x, y, z),
    `temperature_c` and `status`. Non-MTData2 messages are kept as (mid, data) in
    `messages` (bounded) for the driver (acks, errors).

    Args:
        max_payload: larger declared payloads are impossible headers (length_errors).
        stf_modulus: SampleTimeFine wrap (2**32; MTi-10/100 wrap at 864_000_000).
        keep_messages: how many non-data messages to keep in `messages`.
    """

    def __init__(
        self, max_payload: int = 4096, stf_modulus: int = 2**32, keep_messages: int = 64
    ) -> None:
        self.stats = ParseStats()
        self.messages: list[tuple[int, bytes]] = []
        self._keep = keep_messages
        self._max_payload = max_payload
        self._buf = bytearray()
        self._layouts: dict[bytes, _Layout] = {}
        self._stf = ClockUnwrap(stf_modulus, STF_TICK_NS)
        self._pc = ClockUnwrap(65536)
        self._synced = True
        self.unknown_packets = 0

    def _discard(self, n: int) -> None:
        st = self.stats
        st.bytes_discarded += n
        if self._synced:
            st.resyncs += 1
            self._synced = False

    def feed(self, data: bytes) -> list[ImuSample]:
        """Append received bytes; return the samples of all complete valid frames."""
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[ImuSample] = []
        pos = 0
        end = len(buf)
        find = buf.find
        while True:
            i = find(_SYNC, pos)
            if i < 0:
                # keep a trailing FA: it may be the start of the next frame
                keep = end - 1 if end > pos and buf[end - 1] == PREAMBLE else end
                if keep > pos:
                    self._discard(keep - pos)
                pos = keep
                break
            if i > pos:
                self._discard(i - pos)
                pos = i
            if end - i < 4:
                break
            mid = buf[i + 2]
            n = buf[i + 3]
            hlen = 4
            if n == 0xFF:
                if end - i < 6:
                    break
                n = (buf[i + 4] << 8) | buf[i + 5]
                hlen = 6
            if n > self._max_payload:
                st.length_errors += 1
                self._discard(1)
                pos = i + 1
                continue
            fend = i + hlen + n + 1
            if fend > end:
                break
            if sum(buf[i + 1:fend]) & 0xFF:
                st.checksum_errors += 1
                self._discard(1)
                pos = i + 1
                continue
            if mid == MID_MTDATA2:
                sample = self._mtdata2(buf, i + hlen, n)
                if sample is None:
                    st.length_errors += 1
                    self._discard(1)
                    pos = i + 1
                    continue
                if sample is not False:
                    out.append(sample)
            else:
                st.unknown_type += mid != MID_GOTO_CONFIG_ACK and mid != MID_GOTO_MEASUREMENT_ACK
                if len(self.messages) < self._keep:
                    self.messages.append((mid, bytes(buf[i + hlen:fend - 1])))
            st.frames_ok += 1
            self._synced = True
            pos = fend
        if pos:
            del buf[:pos]
        st.samples += len(out)
        return out

    def _mtdata2(self, buf: bytearray, start: int, n: int) -> ImuSample | bool | None:
        """Decode one MTData2 payload: a sample, False (valid, no acc+gyr) or None (corrupt)."""
        # layouts are cached by length and verified by their packet headers on every use
        lay = self._layouts.get(n)
        vals = None
        if lay is not None:
            vals = lay.st.unpack_from(buf, start)
            if lay.hdr_get(vals) != lay.hdr:
                vals = None
        if vals is None:
            try:
                lay = _Layout(memoryview(buf)[start:start + n], n)
            except ValueError as exc:
                _log.debug("corrupt MTData2 frame: %s", exc)
                return None
            if len(self._layouts) >= 64:
                self._layouts.clear()
            self._layouts[n] = lay
            vals = lay.st.unpack_from(buf, start)
        self.unknown_packets += lay.unknown
        ia = lay.ia
        ig = lay.ig
        if ia < 0 or ig < 0:
            self.stats.unknown_type += 1  # valid MTData2 without acc+gyr (e.g. quaternion only)
            return False
        i = lay.istf
        if i >= 0:
            t = self._stf.update(vals[i])
            if self._stf.last_was_reset:
                self.stats.clock_resets += 1
        else:
            t = -1
        i = lay.ipc
        c = self._pc.update(vals[i]) if i >= 0 else -1
        i = lay.imag
        mag = vals[i:i + 3] if i >= 0 else None
        extra = None
        if lay.extras:
            extra = {name: (vals[i] if k == 1 else vals[i:i + k]) for name, i, k in lay.extras}
        return ImuSample(t, c, vals[ia:ia + 3], vals[ig:ig + 3], mag, extra)
