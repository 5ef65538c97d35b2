"""A fake of bleak's client/scanner API backed by simulated Movella DOT and WitMotion BLE devices.

Use it as a BLE driver's ``backend: tests.fake_bleak``. Devices live in the
module registry ``DEVICES`` (address -> device): tests add them with
:func:`add_device`, worker processes get them from the ``IMUFLOW_FAKE_BLE``
environment variable, a JSON list of
``{"kind": "dot"|"witmotion", "address", "name", "rssi", "drop_after_s", "drop_for_s"}``
(a scripted outage: ``drop_after_s`` after streaming starts the link drops and
the device is unreachable for ``drop_for_s``). Streaming devices notify from a
timer task on the connecting event loop, as the OS would through bleak; every
write and notify change is logged in ``device.log`` as ``(op, uuid, bytes)``.
The device clock keeps running during an outage, so what was lost shows as a
time-stamp jump: sample ``k`` has time stamp ``k * period`` exactly.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import struct
import time
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Self

from drivers.ble import movella_dot_protocol as dot
from drivers.ble import witmotion_ble_protocol as wit


class BleakError(Exception):
    """Same role as bleak.exc.BleakError."""


class FakeBLEDevice:
    """Mirrors bleak.backends.device.BLEDevice: address, name, details."""

    def __init__(self, address: str, name: str | None, details: Any = None) -> None:
        self.address, self.name, self.details = address, name, details

    def __repr__(self) -> str:
        return f"FakeBLEDevice({self.address}, {self.name})"


class FakeAdvertisementData(NamedTuple):
    """Mirrors bleak's AdvertisementData."""

    local_name: str | None
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]
    service_uuids: list[str]
    tx_power: int | None
    rssi: int
    platform_data: tuple


class FakeCharacteristic:
    """What bleak passes as the notification sender (BleakGATTCharacteristic)."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid


class SimulatedDevice:
    """Common part of the simulated peripherals: reachability, notify table, log, streaming timer."""

    characteristics: tuple[str, ...] = ()
    manufacturer_data: ClassVar[dict[int, bytes]] = {}

    def __init__(self, address: str, name: str, rssi: int = -60, drop_after_s: float = 0.0,
                 drop_for_s: float = 0.0) -> None:
        self.address, self.name, self.rssi = address, name, rssi
        self.boot = time.monotonic()
        self.log: list[tuple[str, str, bytes]] = []
        self.client: FakeBleakClient | None = None
        self.callbacks: dict[str, Callable] = {}
        self.unreachable_until = 0.0
        self.streaming = False
        self.sent = 0  # notifications delivered
        self.skip_next = 0  # notifications to lose in the air (the link stays up)
        self.drops = 0
        self._drop_after_s, self._drop_for_s = drop_after_s, drop_for_s
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def reachable(self) -> bool:
        """False during a simulated outage."""
        return time.monotonic() >= self.unreachable_until

    def advertisement(self) -> FakeAdvertisementData:
        """The device's advertisement data."""
        return FakeAdvertisementData(self.name, dict(self.manufacturer_data), {}, [], None,
                                     self.rssi, ())

    # -- GATT as seen by the client ------------------------------------------------------------
    def read(self, uuid: str) -> bytes:
        raise BleakError(f"characteristic {uuid} not readable on the simulated {self.name}")

    def write(self, uuid: str, data: bytes) -> None:
        self.log.append(("write", uuid, data))

    def notify(self, uuid: str, callback: Callable | None) -> None:
        if uuid not in self.characteristics:
            raise BleakError(f"characteristic {uuid} was not found")
        self.log.append(("start_notify" if callback else "stop_notify", uuid, b""))
        if callback:
            self.callbacks[uuid] = callback
        else:
            self.callbacks.pop(uuid, None)

    # -- streaming -----------------------------------------------------------------------------
    def period_s(self) -> float:
        raise NotImplementedError

    def payload(self, k: int) -> tuple[str, bytes]:
        """(characteristic, bytes) of sample ``k``."""
        raise NotImplementedError

    def start_streaming(self) -> None:
        self.streaming = True
        self._loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._stream())

    def stop_streaming(self) -> None:
        self.streaming = False

    async def _stream(self) -> None:
        period = self.period_s()
        started = time.monotonic()
        k = math.floor((time.monotonic() - self.boot) / period) + 1
        while self.streaming and self.client is not None:
            due = self.boot + k * period
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            if not (self.streaming and self.client is not None):
                break
            if self._drop_for_s > 0 and time.monotonic() - started >= self._drop_after_s:
                self._drop_for_s, for_s = 0.0, self._drop_for_s
                self.drop(for_s)
                break
            uuid, data = self.payload(k)
            cb = self.callbacks.get(uuid)
            if self.skip_next > 0:
                self.skip_next -= 1
                cb = None
            if cb is not None:
                self.sent += 1
                res = cb(FakeCharacteristic(uuid), bytearray(data))
                if asyncio.iscoroutine(res):
                    await res
            k += 1

    def drop(self, for_s: float) -> None:
        """Lose the link now and stay unreachable for ``for_s`` seconds (thread-safe)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self.drop, for_s)
                return
        self.drops += 1
        self.log.append(("dropped", "", b""))
        self.unreachable_until = time.monotonic() + for_s
        self.streaming = False
        self.callbacks.clear()
        client, self.client = self.client, None
        if client is not None:
            client._lost()


class FakeDot(SimulatedDevice):
    """A Movella DOT: device control, battery, control, payload characteristics; modes 20/21/26."""

    characteristics = (dot.DEVICE_CONTROL, dot.BATTERY, dot.CONTROL, dot.MEDIUM_PAYLOAD,
                       dot.LONG_PAYLOAD, dot.SHORT_PAYLOAD)
    manufacturer_data: ClassVar[dict[int, bytes]] = {dot.COMPANY_ID: b"\x01\x02"}

    def __init__(self, address: str, name: str = "Movella DOT", **kw: Any) -> None:
        super().__init__(address, name, **kw)
        self.control = bytearray(dot.set_output_rate(None, 60))
        self.control[0] = 0
        self.battery = bytes((87, 0))
        self.mode = 21

    def read(self, uuid: str) -> bytes:
        if uuid == dot.DEVICE_CONTROL:
            return bytes(self.control)
        if uuid == dot.BATTERY:
            return self.battery
        if uuid == dot.CONTROL:
            return bytes((1, int(self.streaming), self.mode))
        return super().read(uuid)

    def write(self, uuid: str, data: bytes) -> None:
        super().write(uuid, data)
        if uuid == dot.DEVICE_CONTROL:
            if self.streaming:
                raise BleakError("output rate cannot change while measuring")
            if data[0] & dot.VISIT_OUTPUT_RATE:
                self.control[24:26] = data[24:26]
        elif uuid == dot.CONTROL:
            if data[:2] == b"\x01\x01":
                self.mode = data[2]
                self.start_streaming()
            elif data[:2] == b"\x01\x00":
                self.stop_streaming()

    def period_s(self) -> float:
        return 1.0 / dot.output_rate_of(self.control)

    def payload(self, k: int) -> tuple[str, bytes]:
        rate = dot.output_rate_of(self.control)
        ts = (k * 1_000_000 // rate) % 2**32
        acc = (0.001 * (k % 10000), -0.5, 9.81)
        gyr = (10.0, -2.5, 0.1 * (k % 100))
        if self.mode == 26:
            data = struct.pack("<I4f3f3f", ts, 1.0, 0.0, 0.0, 0.0, *acc, *gyr)
        elif self.mode == 20:
            data = struct.pack("<I3f3f3h", ts, *acc, *gyr, 2048, -1024, 4096)
        else:
            data = struct.pack("<I3f3f", ts, *acc, *gyr) + bytes(12)  # padded to 40 bytes
        return dot.payload_characteristic(self.mode), data

    def set_battery(self, level_pct: int, charging: bool = False) -> None:
        """Change the battery level and notify it if subscribed (call on the loop)."""
        self.battery = bytes((level_pct, int(charging)))
        cb = self.callbacks.get(dot.BATTERY)
        if cb is not None:
            cb(FakeCharacteristic(dot.BATTERY), bytearray(self.battery))


class FakeWitMotion(SimulatedDevice):
    """A WitMotion WT901BLECL 5.0: streams 0x61 packets once notifications are on (10 Hz default)."""

    characteristics = (wit.NOTIFY_UUID, wit.WRITE_UUID)

    def __init__(self, address: str, name: str = "WT901BLE68", **kw: Any) -> None:
        super().__init__(address, name, **kw)
        self.rate_hz = 10
        self.unlocked = False
        self.battery_cv = 395  # 3.95 V in 1/100 V

    def notify(self, uuid: str, callback: Callable | None) -> None:
        super().notify(uuid, callback)
        if uuid == wit.NOTIFY_UUID:
            self.start_streaming() if callback else self.stop_streaming()

    def write(self, uuid: str, data: bytes) -> None:
        super().write(uuid, data)
        if uuid != wit.WRITE_UUID or data[:2] != b"\xff\xaa":
            return
        reg, value = data[2], data[3] | data[4] << 8
        if data == wit.unlock():
            self.unlocked = True
        elif reg == 0x03 and self.unlocked:
            codes = {v: k for k, v in wit.BLE_RATE_CODES_HZ.items()}
            self.rate_hz = codes.get(value, self.rate_hz)
        elif reg == 0x27 and value == wit.REG_BATTERY:
            reply = struct.pack("<BBH8h", 0x55, 0x71, wit.REG_BATTERY, self.battery_cv, *[0] * 7)
            cb = self.callbacks.get(wit.NOTIFY_UUID)
            if cb is not None:
                asyncio.get_running_loop().call_soon(
                    cb, FakeCharacteristic(wit.NOTIFY_UUID), bytearray(reply))

    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def payload(self, k: int) -> tuple[str, bytes]:
        vals = (k % 30000, -1024, 2048, 100, -100, 0, 0, 0, k % 30000)
        return wit.NOTIFY_UUID, struct.pack("<BB9h", 0x55, 0x61, *vals)


DEVICES: dict[str, SimulatedDevice] = {}


def add_device(device: SimulatedDevice) -> SimulatedDevice:
    """Make ``device`` visible to scanners and clients; returns it."""
    DEVICES[device.address.upper()] = device
    return device


def reset() -> None:
    """Forget every simulated device."""
    DEVICES.clear()


def _load_env() -> None:
    raw = os.environ.get("IMUFLOW_FAKE_BLE")
    if not raw:
        return
    for spec in json.loads(raw):
        spec = dict(spec)
        cls = {"dot": FakeDot, "witmotion": FakeWitMotion}[spec.pop("kind")]
        add_device(cls(**spec))


class FakeBleakScanner:
    """Mirrors BleakScanner's class methods used by drivers and discovery."""

    def __init__(self, detection_callback: Any = None, service_uuids: Any = None, **kw: Any) -> None:
        self.detection_callback = detection_callback

    @classmethod
    async def discover(cls, timeout: float = 5.0, *, return_adv: bool = False, **kw: Any) -> Any:
        """Devices reachable now: list of BLEDevice, or {address: (BLEDevice, adv)}."""
        await asyncio.sleep(min(timeout, 0.05))
        found = {d.address: (FakeBLEDevice(d.address, d.name), d.advertisement())
                 for d in DEVICES.values() if d.reachable and d.client is None}
        return found if return_adv else [dev for dev, _ in found.values()]

    @classmethod
    async def find_device_by_address(cls, device_identifier: str,
                                     timeout: float = 10.0, **kw: Any) -> FakeBLEDevice | None:
        """The device if it advertises within ``timeout`` (outages end early), else None."""
        deadline = time.monotonic() + timeout
        dev = DEVICES.get(device_identifier.upper())
        while time.monotonic() < deadline:
            if dev is not None and dev.reachable:
                await asyncio.sleep(0.01)
                return FakeBLEDevice(dev.address, dev.name)
            await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
        return None


class FakeBleakClient:
    """Mirrors BleakClient: connect/disconnect, GATT read/write, notifications, context manager."""

    def __init__(self, address_or_ble_device: Any, disconnected_callback: Callable | None = None,
                 services: Any = None, *, timeout: float = 30.0, pair: bool = False,
                 **kw: Any) -> None:
        addr = getattr(address_or_ble_device, "address", address_or_ble_device)
        self.address = str(addr)
        self._disconnected_callback = disconnected_callback
        self._device: SimulatedDevice | None = None
        self.mtu_size = 247

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        return self._device is not None

    @property
    def name(self) -> str | None:
        dev = DEVICES.get(self.address.upper())
        return dev.name if dev else None

    async def connect(self, **kw: Any) -> None:
        await asyncio.sleep(0.01)
        dev = DEVICES.get(self.address.upper())
        if dev is None or not dev.reachable:
            raise BleakError(f"Device with address {self.address} was not found.")
        if dev.client is not None:
            raise BleakError(f"{self.address} is already connected to another client")
        dev.client = self
        dev.log.append(("connect", "", b""))
        self._device = dev

    async def disconnect(self) -> None:
        dev = self._device
        if dev is None:
            return
        dev.log.append(("disconnect", "", b""))
        dev.streaming = False
        dev.callbacks.clear()
        dev.client = None
        self._lost()

    def _lost(self) -> None:
        self._device = None
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback, self)

    def _dev(self) -> SimulatedDevice:
        if self._device is None:
            raise BleakError("Not connected")
        return self._device

    async def start_notify(self, char_specifier: Any, callback: Callable, **kw: Any) -> None:
        self._dev().notify(_uuid(char_specifier), callback)

    async def stop_notify(self, char_specifier: Any) -> None:
        self._dev().notify(_uuid(char_specifier), None)

    async def read_gatt_char(self, char_specifier: Any, **kw: Any) -> bytearray:
        return bytearray(self._dev().read(_uuid(char_specifier)))

    async def write_gatt_char(self, char_specifier: Any, data: Any, response: bool | None = None
                              ) -> None:
        self._dev().write(_uuid(char_specifier), bytes(data))

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()


def _uuid(char: Any) -> str:
    return str(getattr(char, "uuid", char)).lower()


BleakClient = FakeBleakClient
BleakScanner = FakeBleakScanner
_load_env()
