"""``imuflow devices [--ble/--no-ble] [--timeout S] [--json]``: list serial ports and BLE IMUs.

Serial ports show device, USB vid:pid, description and the recognised type
(Xsens MTi, WitMotion, USB-UART bridge, Arduino); the BLE scan shows address,
RSSI, recognised type (Movella DOT, WitMotion) and name. Without a Bluetooth
adapter or service the BLE part says so and the serial list is still shown
(exit code 0). ``--backend MODULE`` names a module with bleak's BleakScanner
(default ``bleak``; the tests use ``tests.fake_bleak``).
"""

from __future__ import annotations

import argparse
import json

from pipeline.runtime.registry import plugin

SURVEY_GROUP = "imuflow.device_surveys"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("--ble", action=argparse.BooleanOptionalAction, default=True,
                   help="scan for BLE devices (default: yes)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="BLE scan duration in seconds (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--backend", default="bleak", metavar="MODULE",
                   help="module providing BleakScanner (test hook; default bleak)")


def run(args: argparse.Namespace) -> int:
    """Survey the devices and print them; 0 even when Bluetooth is unavailable."""
    survey_devices = plugin(SURVEY_GROUP, "serial_and_ble")
    survey = survey_devices(ble=args.ble, timeout_s=args.timeout, backend=args.backend)
    print(json.dumps(survey.to_json(), indent=2) if args.json else survey.to_text())
    return 0
