"""Serial and BLE discovery tests: pyserial ListPortInfo objects and a fake bleak scanner."""

from __future__ import annotations

import asyncio

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from serial.tools.list_ports_common import ListPortInfo

from drivers.ble.discovery import BleKind, recognise_ble, scan_ble
from drivers.serial.discovery import SerialKind, list_serial_ports, recognise_port


def _port(device, vid=None, pid=None, description="n/a", manufacturer=None):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description, info.manufacturer = vid, pid, description, manufacturer
    return info


def test_serial_ports_recognised_and_sorted():
    ports = [
        _port("/dev/ttyS0"),
        _port("/dev/ttyUSB1", 0x1A86, 0x7523, "USB Serial"),
        _port("/dev/ttyUSB0", 0x2639, 0x0013, "MTi-300 AHRS", "Xsens"),
        _port("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno"),
        _port("/dev/ttyUSB2", 0x10C4, 0xEA60, "WitMotion WT901 CP2102"),
        _port("/dev/ttyUSB3", 0x0403, 0xD38A, "FT232R"),
    ]
    got = list_serial_ports(ports)
    assert [(p.device, p.kind) for p in got] == [
        ("/dev/ttyUSB0", SerialKind.XSENS_MTI),
        ("/dev/ttyUSB3", SerialKind.XSENS_MTI),
        ("/dev/ttyUSB2", SerialKind.WITMOTION),
        ("/dev/ttyUSB1", SerialKind.USB_UART),
        ("/dev/ttyACM0", SerialKind.ARDUINO),
        ("/dev/ttyS0", SerialKind.UNKNOWN),
    ]
    assert got[0].vid_pid == "2639:0013" and got[0].model == "MTi-300"
    assert got[3].model == "WCH CH340" and got[-1].vid_pid is None


def test_recognise_port_by_strings_only():
    assert recognise_port(None, None, "Movella MTi-630")[0] is SerialKind.XSENS_MTI
    assert recognise_port(0x0403, 0x6001, "FT232R USB UART")[0] is SerialKind.UNKNOWN


def test_list_serial_ports_default_uses_comports():
    from serial.tools.list_ports import comports
    ports = comports()  # this machine's real pyserial listing (may be empty)
    got = list_serial_ports()
    assert sorted(p.device for p in got) == sorted(p.device for p in ports)
    assert got == list_serial_ports(ports)  # each described and ordered as given explicitly


class FakeScanner:
    """Mirrors bleak's `BleakScanner.discover(timeout, *, return_adv)` classmethod surface."""

    calls: list = []
    result: dict = {}

    @classmethod
    async def discover(cls, timeout=5.0, *, return_adv=False, **kwargs):
        cls.calls.append((timeout, return_adv))
        assert return_adv, "discovery needs advertisement data (rssi, manufacturer_data)"
        await asyncio.sleep(0)
        return cls.result


def _adv(name, rssi, mdata=None):
    dev = BLEDevice(f"D4:22:CD:00:00:{rssi & 0xFF:02X}", name, None)
    return dev.address, (dev, AdvertisementData(name, mdata or {}, {}, [], None, rssi, ()))


def test_ble_scan_with_fake_scanner():
    FakeScanner.result = dict([
        _adv("Movella DOT", -70),
        _adv(None, -40, {0x0886: b"\x01\x02"}),     # no name, Movella company id
        _adv("WT901BLE68", -55),
        _adv("Xsens DOT", -50),
        _adv("Phone", -30, {0x004C: b"\x00"}),
    ])
    got = asyncio.run(scan_ble(timeout_s=1.5, scanner_cls=FakeScanner))
    assert FakeScanner.calls[-1] == (1.5, True)
    assert [(d.name, d.kind, d.rssi) for d in got] == [
        (None, BleKind.MOVELLA_DOT, -40),
        ("Xsens DOT", BleKind.MOVELLA_DOT, -50),
        ("Movella DOT", BleKind.MOVELLA_DOT, -70),
        ("WT901BLE68", BleKind.WITMOTION, -55),
        ("Phone", BleKind.UNKNOWN, -30),
    ]
    assert got[0].device is not None and got[0].address.startswith("D4:22:CD")
    known = asyncio.run(scan_ble(timeout_s=1.0, scanner_cls=FakeScanner, only_known=True))
    assert len(known) == 4


def test_recognise_ble_names_case_insensitive():
    assert recognise_ble("movella dot", None) is BleKind.MOVELLA_DOT
    assert recognise_ble("MOVELLA Dot", {}) is BleKind.MOVELLA_DOT
    assert recognise_ble(None, None) is BleKind.UNKNOWN
