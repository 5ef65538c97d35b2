"""BLE scan for IMUs with bleak: name, address, RSSI and recognised type (no connection made).

See docs/hardware-protocols.md section 6.2. The scanner class is injectable
(anything with bleak's `await BleakScanner.discover(timeout=..., return_adv=True)`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from drivers.ble.movella_dot_protocol import COMPANY_ID as MOVELLA_COMPANY_ID
from drivers.ble.movella_dot_protocol import NAMES as MOVELLA_NAMES

_log = logging.getLogger("imuflow.ble_discovery")


class BleKind(str, Enum):
    """What a BLE device probably is."""

    MOVELLA_DOT = "movella_dot"  # drivers.ble.movella_dot_protocol
    WITMOTION = "witmotion"  # drivers.ble.witmotion_ble_protocol (name prefix "WT", UNVERIFIED)
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BleDeviceInfo:
    """One advertising device: `rssi` in dBm; `device` is bleak's BLEDevice for connecting."""

    name: str | None
    address: str
    rssi: int | None
    kind: BleKind
    device: Any = field(default=None, compare=False, repr=False)


def recognise_ble(name: str | None, manufacturer_data: Mapping[int, bytes] | None) -> BleKind:
    """Guess the device type from its advertised name and manufacturer data company ids."""
    if manufacturer_data and MOVELLA_COMPANY_ID in manufacturer_data:
        return BleKind.MOVELLA_DOT
    low = (name or "").strip().lower()
    if any(low.startswith(n) for n in MOVELLA_NAMES):
        return BleKind.MOVELLA_DOT
    if low.startswith("wt"):
        return BleKind.WITMOTION
    return BleKind.UNKNOWN


async def scan_ble(
    timeout_s: float = 5.0, scanner_cls: Any = None, only_known: bool = False
) -> list[BleDeviceInfo]:
    """Scan for `timeout_s` seconds; return devices sorted by kind then RSSI (strongest first).

    Args:
        timeout_s: scan duration in seconds.
        scanner_cls: class with bleak's `discover(timeout, return_adv=True)`; default
            `bleak.BleakScanner`.
        only_known: drop devices not recognised as an IMU.
    """
    if scanner_cls is None:
        from bleak import BleakScanner

        scanner_cls = BleakScanner
    found = await scanner_cls.discover(timeout=timeout_s, return_adv=True)
    out: list[BleDeviceInfo] = []
    for address, (device, adv) in found.items():
        name = adv.local_name or device.name
        kind = recognise_ble(name, adv.manufacturer_data)
        if only_known and kind is BleKind.UNKNOWN:
            continue
        out.append(BleDeviceInfo(name, device.address or address, adv.rssi, kind, device))
    order = list(BleKind)
    out.sort(key=lambda d: (order.index(d.kind), -(d.rssi if d.rssi is not None else -999)))
    _log.debug("BLE scan found %d devices (%d kept)", len(found), len(out))
    return out
