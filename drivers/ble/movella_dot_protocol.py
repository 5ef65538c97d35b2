"""Movella DOT BLE protocol: GATT UUIDs, payload decoders, control/rate/battery/info codecs.

Pure encoding/decoding, no I/O (the bleak driver node wraps it). See
docs/hardware-protocols.md section 1. All fields little-endian; gyro arrives
in deg/s and is converted to rad/s; timestamps are u32 microseconds.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from enum import IntEnum

from drivers.clock_unwrap import ClockUnwrap
from drivers.imu_sample import ImuSample
from drivers.parse_stats import ParseStats

_log = logging.getLogger("imuflow.movella_dot_protocol")

COMPANY_ID = 0x0886  # Movella Technologies B.V., key of AdvertisementData.manufacturer_data
NAMES = ("movella dot", "xsens dot")  # advertised names, compare case-insensitively


def dot_uuid(short: int) -> str:
    """Full lower-case 128-bit UUID for a DOT short id, e.g. 0x2003."""
    return f"1517{short:04x}-4947-11e9-8646-d663bd873d93"


CONFIGURATION_SERVICE = dot_uuid(0x1000)
DEVICE_INFO = dot_uuid(0x1001)
DEVICE_CONTROL = dot_uuid(0x1002)
DEVICE_REPORT = dot_uuid(0x1004)
MEASUREMENT_SERVICE = dot_uuid(0x2000)
CONTROL = dot_uuid(0x2001)
LONG_PAYLOAD = dot_uuid(0x2002)
MEDIUM_PAYLOAD = dot_uuid(0x2003)
SHORT_PAYLOAD = dot_uuid(0x2004)
ORIENTATION_RESET_CONTROL = dot_uuid(0x2006)
ORIENTATION_RESET_STATUS = dot_uuid(0x2007)
BATTERY_SERVICE = dot_uuid(0x3000)
BATTERY = dot_uuid(0x3001)
MESSAGE_SERVICE = dot_uuid(0x7000)

OUTPUT_RATES_HZ = (1, 4, 10, 12, 15, 20, 30, 60)  # real-time streaming rates
DEVICE_CONTROL_LEN = 32
DEVICE_INFO_LEN = 34
VISIT_IDENTIFY, VISIT_POWER, VISIT_OUTPUT_RATE, VISIT_FILTER_PROFILE = 0x01, 0x02, 0x10, 0x20
DEG2RAD = math.pi / 180.0
MAG_SCALE = 1.0 / 4096.0  # i16 fixed point -> a.u. (Xsens example server; UNVERIFIED)


class PayloadMode(IntEnum):
    """Payload modes that carry calibrated acc and gyr (decodable by `DotPayloadDecoder`)."""

    RATE_QUANTITIES_WITH_MAG = 20
    RATE_QUANTITIES = 21
    CUSTOM_MODE_5 = 26


# mode -> (struct, payload bytes, payload characteristic)
_LAYOUT = {
    PayloadMode.RATE_QUANTITIES_WITH_MAG: (struct.Struct("<I3f3f3h"), MEDIUM_PAYLOAD),
    PayloadMode.RATE_QUANTITIES: (struct.Struct("<I3f3f"), MEDIUM_PAYLOAD),
    PayloadMode.CUSTOM_MODE_5: (struct.Struct("<I4f3f3f"), LONG_PAYLOAD),
}


def payload_characteristic(mode: int) -> str:
    """UUID of the notification characteristic that carries `mode`."""
    return _LAYOUT[PayloadMode(mode)][1]


def payload_size(mode: int) -> int:
    """Payload length in bytes of `mode` (20: 34, 21: 28, 26: 44)."""
    return _LAYOUT[PayloadMode(mode)][0].size


def start_measurement(mode: int) -> bytes:
    """Control (0x2001) value that starts real-time streaming: `01 01 <mode>`."""
    return bytes((0x01, 0x01, int(mode) & 0xFF))


def stop_measurement(mode: int) -> bytes:
    """Control (0x2001) value that stops streaming: `01 00 <mode>`."""
    return bytes((0x01, 0x00, int(mode) & 0xFF))


def heading_reset() -> bytes:
    """Orientation reset control (0x2006) value for a heading reset: `01 00`."""
    return b"\x01\x00"


def heading_revert() -> bytes:
    """Orientation reset control (0x2006) value reverting to the default heading: `07 00`."""
    return b"\x07\x00"


def set_output_rate(current: bytes | bytearray | None, rate_hz: int) -> bytes:
    """Device control (0x1002) value setting the output rate; read-modify-write of `current`.

    Pass the 32 bytes read from the characteristic (or None for all zeros); only
    the visit index (0x10) and bytes 24..25 are changed. Valid before measurement.
    """
    if rate_hz not in OUTPUT_RATES_HZ:
        raise ValueError(f"Movella DOT output rate {rate_hz} Hz not one of {OUTPUT_RATES_HZ}")
    buf = bytearray(DEVICE_CONTROL_LEN if current is None else current)
    if len(buf) != DEVICE_CONTROL_LEN:
        raise ValueError(f"device control value must be {DEVICE_CONTROL_LEN} bytes, got {len(buf)}")
    buf[0] = VISIT_OUTPUT_RATE
    struct.pack_into("<H", buf, 24, rate_hz)
    return bytes(buf)


def output_rate_of(control: bytes | bytearray) -> int:
    """Output rate in Hz from a 32-byte device control (0x1002) read."""
    if len(control) < 26:
        raise ValueError(f"device control value too short: {len(control)} bytes")
    return struct.unpack_from("<H", control, 24)[0]


def identify() -> bytes:
    """Device control value that makes the LED blink."""
    return bytes((VISIT_IDENTIFY, 0x01)) + bytes(30)


def power_off() -> bytes:
    """Device control value that powers the sensor off."""
    return bytes((VISIT_POWER, 0x00, 0x01)) + bytes(29)


@dataclass(frozen=True, slots=True)
class BatteryStatus:
    """Battery characteristic (0x3001): `level_pct` 0..100 %, `charging` flag."""

    level_pct: int
    charging: bool


def decode_battery(data: bytes | bytearray) -> BatteryStatus:
    """Decode the 2-byte battery value, e.g. `5A 01` -> 90 %, charging."""
    if len(data) < 2:
        raise ValueError(f"battery value needs 2 bytes, got {len(data)}: {bytes(data).hex()}")
    if data[0] > 100:
        raise ValueError(f"battery level {data[0]} % out of range 0..100")
    return BatteryStatus(data[0], bool(data[1]))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Device info characteristic (0x1001) contents."""

    mac: str  # "D4:22:CD:00:4B:81"
    firmware: tuple[int, int, int]  # major, minor, revision
    build: tuple[int, int, int, int, int, int]  # year, month, day, hour, minute, second
    softdevice_version: int
    serial_number: int
    product_code: str  # "XS-T01" (DOT v1) or "XS-T02" (DOT v2)


def decode_device_info(data: bytes | bytearray) -> DeviceInfo:
    """Decode the 34-byte device info value (MAC stored LSB first)."""
    if len(data) < DEVICE_INFO_LEN:
        raise ValueError(f"device info needs {DEVICE_INFO_LEN} bytes, got {len(data)}")
    mac = ":".join(f"{b:02X}" for b in reversed(data[0:6]))
    fw = (data[6], data[7], data[8])
    year, mo, d, h, mi, s, sd, serial = struct.unpack_from("<H5BIQ", data, 9)
    code = bytes(data[28:34]).rstrip(b"\x00").decode("ascii", errors="replace")
    return DeviceInfo(mac, fw, (year, mo, d, h, mi, s), sd, serial, code)


def decode_report(data: bytes | bytearray) -> tuple[int, int | None]:
    """Device report (0x1004): (type, button timestamp in ms or None); 1 off, 4 saving, 5-7 clicks."""
    if not data:
        raise ValueError("empty device report")
    if data[0] in (5, 6, 7) and len(data) >= 6:
        return data[0], struct.unpack_from("<I", data, 2)[0]
    return data[0], None


class DotPayloadDecoder:
    """Decode measurement notifications of one payload mode into `ImuSample`s.

    Output: `acc` m/s^2 (calibrated), `gyr` rad/s (from deg/s), sensor frame;
    `mag` a.u. (i16 / 4096, mode 20 only, else None); `t_sensor_ns` unwraps the
    u32 microsecond clock (reboot -> `clock_resets`); `counter` -1 (none in the
    payload); mode 26 adds `extra["quat"]` (w, x, y, z). A notification shorter
    than the mode's payload is a length error (no sample); a longer one (padding)
    has its tail ignored. With `rate_hz`, time steps above 1.5 periods are counted
    in `gaps` (lost notifications; nothing is interpolated).

    Args:
        mode: the payload mode that was started (20, 21 or 26).
        rate_hz: configured output rate, for gap counting (None: no gap check).
    """

    def __init__(self, mode: int, rate_hz: float | None = None) -> None:
        try:
            self.mode = PayloadMode(mode)
        except ValueError:
            raise ValueError(
                f"Movella DOT payload mode {mode} carries no acc+gyr; use one of "
                f"{[int(m) for m in PayloadMode]}"
            ) from None
        self._st, _ = _LAYOUT[self.mode]
        self.size = self._st.size
        self.stats = ParseStats()
        self.gaps = 0
        self._gap_ns = None if rate_hz is None else int(1.5e9 / rate_hz)
        self._clock = ClockUnwrap(2**32, 1000)
        self._last_ns = -1

    def feed(self, data: bytes | bytearray) -> list[ImuSample]:
        """Decode one notification; empty list if it is truncated."""
        st = self.stats
        st.bytes_in += len(data)
        if len(data) < self.size:
            st.length_errors += 1
            st.bytes_discarded += len(data)
            _log.debug("DOT mode %d notification of %d < %d bytes", self.mode, len(data), self.size)
            return []
        v = self._st.unpack_from(data, 0)
        t = self._clock.update(v[0])
        if self._clock.last_was_reset:
            st.clock_resets += 1
        elif self._gap_ns is not None and self._last_ns >= 0 and t - self._last_ns > self._gap_ns:
            self.gaps += 1
        if t <= self._last_ns:
            st.time_backsteps += 1
        self._last_ns = t
        mode = self.mode
        if mode == PayloadMode.CUSTOM_MODE_5:
            acc, g, extra = v[5:8], v[8:11], {"quat": v[1:5]}
            mag = None
        else:
            acc, g, extra = v[1:4], v[4:7], None
            mag = None
            if mode == PayloadMode.RATE_QUANTITIES_WITH_MAG:
                mag = (v[7] * MAG_SCALE, v[8] * MAG_SCALE, v[9] * MAG_SCALE)
        st.frames_ok += 1
        st.samples += 1
        return [ImuSample(t, -1, acc, (g[0] * DEG2RAD, g[1] * DEG2RAD, g[2] * DEG2RAD), mag, extra)]
