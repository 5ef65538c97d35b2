"""WitMotion BLE 5.0 source (WT901BLECL 5.0 and kin) over bleak: 0x61 packets as ``imu.raw``.

Per sensor: subscribe to 0xFFE4 (the device streams 20-byte ``55 61`` packets
as soon as notifications are on), optionally set the output rate (unlock +
RRATE, 10/50/100 Hz only: the codes cross-checked in the protocol doc), and
read the battery register now and then. The packets carry no device clock:
t_sensor is -1, t_host is the notification time (several packets in one
notification are back-dated by the nominal period). See
docs/hardware-protocols.md section 3.3 and docs/hardware.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from drivers.ble import witmotion_ble_protocol as wit
from drivers.ble.ble_source import BleImuSource, BleSensor, SensorState, check_sensors
from drivers.ble.connection import LinkEvent, Notify
from drivers.imu_sample import ImuSample
from pipeline.runtime.streams import RAW_IMU

BATTERY_EVERY_S = 60.0
# vendor table: battery voltage (1/100 V) lower bound -> percent
_BATTERY_TABLE = ((396, 100), (393, 90), (387, 75), (382, 60), (379, 50), (377, 40), (373, 30),
                  (370, 20), (368, 15), (350, 10), (340, 5))


def battery_percent(centivolts: int) -> int:
    """Battery percentage from the register 0x64 value (volts x 100), vendor table."""
    for bound, pct in _BATTERY_TABLE:
        if centivolts > bound:
            return pct
    return 0


class WitProfile:
    """Start/stop sequence of one WitMotion BLE 5.0 sensor."""

    def __init__(self, rate_hz: int, set_rate: bool) -> None:
        self.rate_hz, self.set_rate = rate_hz, set_rate

    async def start(self, client, notify: Notify) -> None:
        """Enable notifications (streaming starts), set the rate if asked, ask for the battery."""
        await client.start_notify(wit.NOTIFY_UUID, lambda _c, data: notify("data", data))
        if self.set_rate:
            await client.write_gatt_char(wit.WRITE_UUID, wit.unlock(), response=False)
            await client.write_gatt_char(wit.WRITE_UUID, wit.set_rate(self.rate_hz),
                                         response=False)
        await client.write_gatt_char(wit.WRITE_UUID, wit.read_register(wit.REG_BATTERY),
                                     response=False)

    async def stop(self, client) -> None:
        """Disable notifications (the device has no separate stop command)."""
        await client.stop_notify(wit.NOTIFY_UUID)


class WitMotionBle(BleImuSource):
    """Stream one or more WitMotion BLE 5.0 sensors as ``imu.raw``.

    Ports:
        imu.raw (out): per sensor (``StreamInfo.source``), RAW_IMU_DTYPE: acc m/s^2 (+-16 g),
            gyr rad/s (+-2000 deg/s), sensor frame; mag NaN; t_sensor -1 (no device clock);
            t_host ns in the notification callback; counter -1.
    Stats extra ``sensors``: per sensor the parser counters, connected, reconnects,
    battery_pct (from the voltage register, vendor table).
    """

    outputs = (RAW_IMU,)
    device_label = "WitMotion BLE 5.0"

    @dataclass(frozen=True)
    class Params:
        sensors: list[BleSensor]  # [{name: shank, address: "E8:..."}, ...]
        rate_hz: int = 10  # nominal output rate, Hz (device default 10)
        set_rate: bool = False  # write the rate to the device (10, 50 or 100 Hz), not saved
        stream_mode: bool = False  # true: packets may span notifications (vendor SDK)
        reconnect_max_s: float = 10.0  # longest wait between reconnect attempts, s
        scan_timeout_s: float = 5.0  # search time per connect attempt, s
        backend: str = "bleak"  # module with BleakClient/BleakScanner (tests: tests.fake_bleak)

        def __post_init__(self) -> None:
            check_sensors(self.sensors)
            if self.rate_hz <= 0 or self.reconnect_max_s <= 0 or self.scan_timeout_s <= 0:
                raise ValueError("rate_hz, reconnect_max_s and scan_timeout_s must be > 0")
            if self.set_rate:
                wit.set_rate(self.rate_hz)  # ValueError names the verified rates

    def setup(self) -> None:
        super().setup()
        self._battery_due = time.monotonic() + BATTERY_EVERY_S

    def stream_meta(self) -> dict:
        return {"mag_units": "none", "device_clock": False}

    def make_profile(self, sensor: BleSensor) -> WitProfile:
        return WitProfile(self.params.rate_hz, self.params.set_rate)

    def make_decoder(self, sensor: BleSensor) -> wit.WitBleParser:
        return wit.WitBleParser(stream_mode=self.params.stream_mode)

    def decode(self, state: SensorState, event: LinkEvent) -> tuple[list[ImuSample], int]:
        samples = state.decoder.feed(event.data)
        volts = state.decoder.registers.pop(wit.REG_BATTERY, None)
        if volts is not None:
            state.battery_pct = battery_percent(volts)
        return samples, 0

    def _battery_read_done(self, fut) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.log.warning("battery read request failed: %r", fut.exception())

    def poll(self, timeout_s: float) -> bool:
        if time.monotonic() >= self._battery_due and self._loop is not None:
            self._battery_due = time.monotonic() + BATTERY_EVERY_S
            for link in self._links.values():
                if link.connected and link.client is not None:
                    fut = self.submit(link.client.write_gatt_char(
                        wit.WRITE_UUID, wit.read_register(wit.REG_BATTERY), response=False))
                    fut.add_done_callback(self._battery_read_done)
        return super().poll(timeout_s)
