"""What IMUs can this host see: serial ports and a BLE scan, with a clear word when Bluetooth is missing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from drivers.ble.bluetooth_service import service_problem
from drivers.ble.connection import backend_errors, load_backend
from drivers.ble.discovery import BleDeviceInfo, scan_ble
from drivers.serial.discovery import SerialPortInfo, list_serial_ports

_log = logging.getLogger("imuflow.device_survey")

_SERIAL_HINT = {
    "xsens_mti": "drivers.serial_imu.SerialImu, protocol: xbus (see docs/hardware.md)",
    "witmotion": "drivers.serial_imu.SerialImu, protocol: witmotion (configs/serial_wt901.yaml)",
    "usb_uart": "drivers.serial_imu.SerialImu, protocol: witmotion or line (try both)",
    "arduino": "drivers.serial_imu.SerialImu, protocol: line (configs/serial_diy.yaml)",
}
_BLE_HINT = {
    "movella_dot": "drivers.movella_dot.MovellaDot (configs/movella_dot_knee.yaml)",
    "witmotion": "drivers.witmotion_ble.WitMotionBle (see docs/hardware.md)",
}


@dataclass
class DeviceSurvey:
    """Serial ports and BLE devices found.

    ``ble_scanned`` is true only when a BLE scan ran to its end (so ``ble`` is what was
    seen); ``ble_error`` says why one that was asked for could not run or failed.
    """

    serial: list[SerialPortInfo] = field(default_factory=list)
    ble: list[BleDeviceInfo] = field(default_factory=list)
    ble_scanned: bool = False
    ble_error: str | None = None

    def to_json(self) -> dict:
        """JSON-able form for ``imuflow devices --json``."""
        return {
            "serial": [{"device": p.device, "vid_pid": p.vid_pid, "description": p.description,
                        "manufacturer": p.manufacturer, "serial_number": p.serial_number,
                        "kind": p.kind.value, "model": p.model} for p in self.serial],
            "ble": [{"name": d.name, "address": d.address, "rssi_dbm": d.rssi,
                     "kind": d.kind.value} for d in self.ble],
            "ble_scanned": self.ble_scanned,
            "ble_error": self.ble_error,
        }

    def to_text(self) -> str:
        """Human-readable tables."""
        lines = ["Serial ports:"]
        if not self.serial:
            lines.append("  (none)")
        for p in self.serial:
            kind = p.kind.value + (f" ({p.model})" if p.model else "")
            lines.append(f"  {p.device:<24} {p.vid_pid or '-':<10} {kind:<32} {p.description}")
            if p.kind.value in _SERIAL_HINT:
                lines.append(f"  {'':<24} -> {_SERIAL_HINT[p.kind.value]}")
        lines.append("BLE devices:")
        if self.ble_error:
            lines.append(f"  BLE scan not possible: {self.ble_error}")
        elif not self.ble_scanned:
            lines.append("  (scan skipped: --no-ble)")
        elif not self.ble:
            lines.append("  (none found)")
        for d in self.ble:
            rssi = f"{d.rssi} dBm" if d.rssi is not None else "-"
            lines.append(f"  {d.address:<20} {rssi:>8}  {d.kind.value:<12} {d.name or '(no name)'}")
            if d.kind.value in _BLE_HINT:
                lines.append(f"  {'':<20} -> {_BLE_HINT[d.kind.value]}")
        return "\n".join(lines)


def _ble_unavailable_reason(exc: BaseException) -> str:
    problem = service_problem(exc)
    if problem:
        return problem
    name = type(exc).__name__
    if name == "BleakBluetoothNotAvailableError":
        return f"Bluetooth is off, missing or not permitted ({exc})"
    if isinstance(exc, (FileNotFoundError, ConnectionError, EOFError)):
        return (f"no Bluetooth service reachable (BlueZ/D-Bus not running, or no adapter): "
                f"{name}: {exc}")
    return f"{name}: {exc}"


def survey_devices(ble: bool = True, timeout_s: float = 5.0,
                   backend: str = "bleak") -> DeviceSurvey:
    """List serial ports, then (if ``ble``) scan BLE for ``timeout_s`` s with ``backend``'s scanner.

    A missing adapter or Bluetooth service is reported in ``ble_error``, never raised.
    """
    survey = DeviceSurvey(serial=list_serial_ports())
    if not ble:
        return survey
    module = load_backend(backend)
    errors = backend_errors(module)
    try:
        survey.ble = asyncio.run(scan_ble(timeout_s, scanner_cls=module.BleakScanner))
        survey.ble_scanned = True
    except errors as exc:
        survey.ble_error = _ble_unavailable_reason(exc)
        _log.debug("BLE scan failed", exc_info=True)
    return survey
