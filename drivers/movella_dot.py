"""Movella DOT source over BLE (bleak): several sensors at once, each its own ``imu.raw`` stream.

Per sensor: set the output rate (read-modify-write of device control 0x1002),
read and subscribe to the battery, subscribe to the payload characteristic of
the mode, write ``01 01 <mode>`` to start. On a dropped link it reconnects with
backoff and marks the gap (never fills it); a jump of the device clock (lost
notifications) is also marked. On stop: ``01 00 <mode>``, notifications off,
disconnect. See docs/hardware-protocols.md section 1 and docs/hardware.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.ble import movella_dot_protocol as dot
from drivers.ble.ble_source import BleImuSource, BleSensor, SensorState, check_sensors
from drivers.ble.connection import LinkEvent, Notify
from drivers.imu_sample import ImuSample
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.streams import RAW_IMU

ORIENTATION = "imu.orientation"
ORIENTATION_DTYPE = np.dtype([("t_sensor", "<i8"), ("t_host", "<i8"), ("q", "<f4", (4,))])


class DotProfile:
    """Start/stop sequence of one Movella DOT (docs/hardware-protocols.md 1.3-1.5)."""

    def __init__(self, rate_hz: int, mode: int, log) -> None:
        self.rate_hz, self.mode, self.log = rate_hz, mode, log
        self.payload_char = dot.payload_characteristic(mode)

    async def start(self, client, notify: Notify) -> None:
        """Set the rate, subscribe to battery and payload, start real-time streaming."""
        control = await client.read_gatt_char(dot.DEVICE_CONTROL)
        if dot.output_rate_of(control) != self.rate_hz:
            await client.write_gatt_char(dot.DEVICE_CONTROL,
                                         dot.set_output_rate(control, self.rate_hz), response=True)
            self.log.info("%s: output rate %d -> %d Hz", client.address, dot.output_rate_of(control),
                          self.rate_hz)
        notify("battery", await client.read_gatt_char(dot.BATTERY))
        await client.start_notify(dot.BATTERY, lambda _c, data: notify("battery", data))
        await client.start_notify(self.payload_char, lambda _c, data: notify("data", data))
        await client.write_gatt_char(dot.CONTROL, dot.start_measurement(self.mode), response=True)

    async def stop(self, client) -> None:
        """Write stop, then disable the payload and battery notifications."""
        await client.write_gatt_char(dot.CONTROL, dot.stop_measurement(self.mode), response=True)
        await client.stop_notify(self.payload_char)
        await client.stop_notify(dot.BATTERY)


class MovellaDot(BleImuSource):
    """Stream one or more Movella DOT sensors over BLE as ``imu.raw``.

    Ports:
        imu.raw (out): per sensor (``StreamInfo.source`` = its name), RAW_IMU_DTYPE: acc m/s^2,
            gyr rad/s (from deg/s), sensor frame; mag NaN (a.u. in mode 20); t_sensor ns of
            the unwrapped 1 MHz device clock; t_host ns in the notification callback; counter -1.
        imu.orientation (out, payload_mode 26 only): per sensor, on-board orientation
            q (w, x, y, z, sensor to the DOT's local earth frame) with t_sensor/t_host ns.
    Stats extra ``sensors``: per sensor the decoder counters, connected, reconnects,
    samples_lost (device-clock jumps), battery_pct, charging.
    """

    outputs = (RAW_IMU, ORIENTATION)
    device_label = "Movella DOT"

    @dataclass(frozen=True)
    class Params:
        sensors: list[BleSensor]  # [{name: thigh, address: "D4:22:CD:00:12:34"}, ...]
        rate_hz: int = 60  # output rate: 1, 4, 10, 12, 15, 20, 30 or 60 Hz
        payload_mode: int = 21  # 21 rate quantities (acc+gyr), 20 (+mag), 26 (+quaternion)
        reconnect_max_s: float = 10.0  # longest wait between reconnect attempts, s
        scan_timeout_s: float = 5.0  # search time per connect attempt, s
        backend: str = "bleak"  # module with BleakClient/BleakScanner (tests: tests.fake_bleak)

        def __post_init__(self) -> None:
            check_sensors(self.sensors)
            if self.rate_hz not in dot.OUTPUT_RATES_HZ:
                raise ValueError(f"rate_hz must be one of {dot.OUTPUT_RATES_HZ} (Movella DOT "
                                 "real-time rates)")
            if self.payload_mode not in [int(m) for m in dot.PayloadMode]:
                raise ValueError(f"payload_mode must be one of {[int(m) for m in dot.PayloadMode]}"
                                 " (modes with calibrated acc and gyr)")
            if self.reconnect_max_s <= 0 or self.scan_timeout_s <= 0:
                raise ValueError("reconnect_max_s and scan_timeout_s must be > 0")

    def setup(self) -> None:
        super().setup()
        self._orient: dict[str, StreamInfo] = {
            s.name: StreamInfo.for_array(
                f"{self.id}/{ORIENTATION}:{s.name}", ORIENTATION, ORIENTATION_DTYPE,
                rate_hz=float(self.params.rate_hz), source=s.name,
                channels=ORIENTATION_DTYPE.names, units=("ns", "ns", "1"),
                meta={"device": self.device_label, "quaternion": "w,x,y,z sensor to local earth"})
            for s in self.params.sensors}

    def stream_meta(self) -> dict:
        mode = self.params.payload_mode
        return {"payload_mode": mode,
                "mag_units": "a.u. (/4096)" if mode == dot.PayloadMode.RATE_QUANTITIES_WITH_MAG
                else "none",
                "onboard_quaternion": ORIENTATION if mode == dot.PayloadMode.CUSTOM_MODE_5 else ""}

    def make_profile(self, sensor: BleSensor) -> DotProfile:
        return DotProfile(self.params.rate_hz, self.params.payload_mode, self.log)

    def make_decoder(self, sensor: BleSensor) -> dot.DotPayloadDecoder:
        return dot.DotPayloadDecoder(self.params.payload_mode, self.params.rate_hz)

    def decode(self, state: SensorState, event: LinkEvent) -> tuple[list[ImuSample], int]:
        dec = state.decoder
        resets = dec.stats.clock_resets
        samples = dec.feed(event.data)
        lost = 0
        if samples:
            t = samples[0].t_sensor_ns
            if dec.stats.clock_resets != resets:
                state.gap_pending = True  # the sensor rebooted: how much was lost is unknown
            elif state.last_t_sensor >= 0:
                lost = max(round((t - state.last_t_sensor) * self.params.rate_hz / 1e9) - 1, 0)
            state.last_t_sensor = samples[-1].t_sensor_ns
        if samples and samples[0].extra and "quat" in samples[0].extra:
            q = np.empty(1, ORIENTATION_DTYPE)
            q["t_sensor"], q["t_host"] = samples[0].t_sensor_ns, event.t_host_ns
            q["q"] = samples[0].extra["quat"]
            self.emit(ORIENTATION, q, t_host=event.t_host_ns, t_sensor=samples[0].t_sensor_ns,
                      info=self._orient[state.sensor.name])
        return samples, lost

    def on_battery(self, state: SensorState, data: bytes) -> None:
        try:
            b = dot.decode_battery(data)
        except ValueError as exc:
            self.log.warning("%s: bad battery value %s: %s", state.sensor.name, data.hex(), exc)
            return
        if state.battery_pct is not None and b.level_pct <= 10 < state.battery_pct:
            self.log.warning("%s: battery low (%d %%)", state.sensor.name, b.level_pct)
        state.battery_pct, state.charging = b.level_pct, b.charging
