"""List serial ports and recognise IMU types by USB vid:pid and description (no I/O besides listing).

See docs/hardware-protocols.md section 6.1. Recognition by USB ids is a hint:
generic USB-UART chips (CH340, CP210x) need a protocol probe to tell a
WitMotion module from a DIY board.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

_log = logging.getLogger("imuflow.serial_discovery")

VID_XSENS = 0x2639
VID_FTDI = 0x0403
XSENS_FTDI_PIDS = range(0xD388, 0xD390)  # older Xsens converters on the FTDI vid
XSENS_PIDS = {0x0001: "MTi-10", 0x0002: "MTi-20", 0x0003: "MTi-30", 0x0011: "MTi-100",
              0x0012: "MTi-200", 0x0013: "MTi-300", 0x0017: "MTi-G-700",
              0xD00D: "Xsens USB-serial converter"}
USB_UART_IDS = {(0x1A86, 0x7523): "WCH CH340", (0x10C4, 0xEA60): "Silicon Labs CP210x"}
VID_ARDUINO = (0x2341, 0x2A03)


class SerialKind(str, Enum):
    """What a serial port probably carries."""

    XSENS_MTI = "xsens_mti"  # Xbus (drivers.serial.xbus)
    WITMOTION = "witmotion"  # WitMotion 11-byte frames (drivers.serial.witmotion)
    USB_UART = "usb_uart"  # generic bridge: WitMotion or DIY board, probe needed
    ARDUINO = "arduino"  # DIY board, likely the $IMU line protocol
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SerialPortInfo:
    """One serial port with its recognised kind; `vid_pid` like "2639:0013" or None."""

    device: str
    vid_pid: str | None
    description: str
    manufacturer: str | None
    serial_number: str | None
    kind: SerialKind
    model: str | None  # e.g. "MTi-300" or "WCH CH340"


def recognise_port(
    vid: int | None, pid: int | None, description: str = "", manufacturer: str | None = None
) -> tuple[SerialKind, str | None]:
    """Guess (kind, model) from USB ids and the description/manufacturer strings."""
    text = f"{description} {manufacturer or ''}".lower()
    if vid == VID_XSENS:
        return SerialKind.XSENS_MTI, XSENS_PIDS.get(pid or -1, "Xsens device")
    if vid == VID_FTDI and pid in XSENS_FTDI_PIDS:
        return SerialKind.XSENS_MTI, "Xsens FTDI converter"
    if "xsens" in text or "movella" in text:
        return SerialKind.XSENS_MTI, None
    if "witmotion" in text or "wt901" in text or "hwt905" in text:
        return SerialKind.WITMOTION, None
    if vid in VID_ARDUINO or "arduino" in text:
        return SerialKind.ARDUINO, None
    if (vid, pid) in USB_UART_IDS:
        return SerialKind.USB_UART, USB_UART_IDS[(vid, pid)]
    return SerialKind.UNKNOWN, None


def describe_port(info: Any) -> SerialPortInfo:
    """Convert a pyserial `ListPortInfo` (or any object with its attributes)."""
    vid = getattr(info, "vid", None)
    pid = getattr(info, "pid", None)
    desc = getattr(info, "description", None) or "n/a"
    manu = getattr(info, "manufacturer", None)
    kind, model = recognise_port(vid, pid, desc, manu)
    vid_pid = f"{vid:04X}:{pid:04X}" if vid is not None and pid is not None else None
    return SerialPortInfo(info.device, vid_pid, desc, manu,
                          getattr(info, "serial_number", None), kind, model)


def list_serial_ports(ports: Iterable[Any] | None = None) -> list[SerialPortInfo]:
    """List serial ports (from `ports`, default pyserial `comports()`), recognised IMUs first."""
    if ports is None:
        from serial.tools.list_ports import comports

        ports = comports()
    found = [describe_port(p) for p in ports]
    order = list(SerialKind)
    found.sort(key=lambda p: (order.index(p.kind), p.device))
    _log.debug("found %d serial ports", len(found))
    return found
