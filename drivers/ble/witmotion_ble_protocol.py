"""WitMotion BLE 5.0 (WT901BLECL 5.0) notification protocol: 20-byte `55 61` / `55 71` packets.

Pure decoding, no I/O. See docs/hardware-protocols.md section 3.3. There is no
checksum; the vendor SDK treats notifications as one byte stream.
"""

from __future__ import annotations

import logging
import struct

from drivers.imu_sample import ImuSample
from drivers.parse_stats import ParseStats
from drivers.serial.witmotion import ACC_SCALE, ANGLE_SCALE, GYR_SCALE
from drivers.serial.witmotion import command as command
from drivers.serial.witmotion import read_register as read_register
from drivers.serial.witmotion import save as save
from drivers.serial.witmotion import unlock as unlock

_log = logging.getLogger("imuflow.witmotion_ble_protocol")

SERVICE_UUID = "0000ffe5-0000-1000-8000-00805f9a34fb"
NOTIFY_UUID = "0000ffe4-0000-1000-8000-00805f9a34fb"
WRITE_UUID = "0000ffe9-0000-1000-8000-00805f9a34fb"

FLAG_DATA = 0x61
FLAG_REGISTERS = 0x71
PACKET_LEN = 20
PACKET_LEN_WITH_TIME = 28  # WT901SDCL-BT50 variant (UNVERIFIED on WT901BLECL 5.0)
REG_MAG = 0x3A
REG_QUAT = 0x51
REG_TEMPERATURE = 0x40
REG_BATTERY = 0x64
BLE_RATE_CODES_HZ = {10: 0x06, 50: 0x08, 100: 0x09}  # others UNVERIFIED per model
_DATA = struct.Struct("<9h")
_REGS = struct.Struct("<H8h")


def set_rate(rate_hz: int) -> bytes:
    """Set the BLE output rate (RRATE 0x03); only the cross-checked codes 10/50/100 Hz."""
    code = BLE_RATE_CODES_HZ.get(rate_hz)
    if code is None:
        raise ValueError(f"WitMotion BLE rate {rate_hz} Hz not one of {sorted(BLE_RATE_CODES_HZ)}")
    return command(0x03, code)


class WitBleParser:
    """Decode WitMotion BLE notifications into `ImuSample`s (one per 0x61 packet).

    Output: `acc` m/s^2 (g0 = 9.80665, +-16 g), `gyr` rad/s (+-2000 deg/s), sensor
    frame; `mag` None; `t_sensor_ns` and `counter` -1 (the packet has no clock).
    `extra`: `euler_rad` (roll, pitch, yaw, Z-Y-X). Register replies (0x71) update
    `registers` {addr: i16 raw}.

    Args:
        stream_mode: True keeps a partial packet for the next notification (vendor
            SDK behaviour); False (default) decodes each notification on its own and
            counts a trailing partial packet as a length error.
    """

    def __init__(self, stream_mode: bool = False) -> None:
        self.stats = ParseStats()
        self.stream_mode = stream_mode
        self.registers: dict[int, int] = {}
        self._buf = bytearray()
        self._synced = True

    def _discard(self, n: int) -> None:
        self.stats.bytes_discarded += n
        if self._synced:
            self.stats.resyncs += 1
            self._synced = False

    def feed(self, data: bytes) -> list[ImuSample]:
        """Feed one notification's bytes; return decoded samples."""
        st = self.stats
        st.bytes_in += len(data)
        if not self.stream_mode:
            self._buf.clear()
            if len(data) == PACKET_LEN_WITH_TIME and data[:2] == b"\x55\x61":
                st.frames_ok += 1
                st.samples += 1
                return [self._sample(data, 0, time_tail=True)]
        buf = self._buf
        buf += data
        out: list[ImuSample] = []
        end = len(buf)
        pos = 0
        while True:
            i = buf.find(b"\x55", pos)
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
            flag = buf[i + 1]
            if flag != FLAG_DATA and flag != FLAG_REGISTERS:
                self._discard(1)
                pos = i + 1
                continue
            if end - i < PACKET_LEN:
                break
            st.frames_ok += 1
            self._synced = True
            if flag == FLAG_DATA:
                out.append(self._sample(buf, i + 2))
            else:
                reg, *vals = _REGS.unpack_from(buf, i + 2)
                for k, v in enumerate(vals):
                    self.registers[reg + k] = v
            pos = i + PACKET_LEN
        if pos:
            del buf[:pos]
        if not self.stream_mode and buf:
            st.length_errors += 1
            st.bytes_discarded += len(buf)
            _log.debug("partial WitMotion BLE packet of %d bytes dropped", len(buf))
            buf.clear()
        st.samples += len(out)
        return out

    def _sample(self, buf: bytes | bytearray, off: int, time_tail: bool = False) -> ImuSample:
        v = _DATA.unpack_from(buf, off + (2 if time_tail else 0))
        extra = {"euler_rad": (v[6] * ANGLE_SCALE, v[7] * ANGLE_SCALE, v[8] * ANGLE_SCALE)}
        if time_tail:
            extra["rtc"] = tuple(buf[20:26]) + (buf[26] | buf[27] << 8,)
        return ImuSample(
            -1, -1,
            (v[0] * ACC_SCALE, v[1] * ACC_SCALE, v[2] * ACC_SCALE),
            (v[3] * GYR_SCALE, v[4] * GYR_SCALE, v[5] * GYR_SCALE),
            None, extra,
        )
