"""BLE without a Bluetooth service: one clear line with what is missing and the fix.

Real bleak against a D-Bus system bus address that does not exist (as on a host where
dbus/bluetoothd are not running): bleak raises a bare FileNotFoundError(2), which the
driver used to log as is, every tenth retry.
"""

from __future__ import annotations

import logging
import time

from bleak.exc import BleakDBusError

from drivers.ble.bluetooth_service import service_problem
from drivers.device_survey import survey_devices
from drivers.movella_dot import MovellaDot
from pipeline.runtime.errors import DeviceTimeout

NO_BUS = "unix:path=/nonexistent/imuflow-no-system-bus"


def test_driver_without_bluetooth_service_logs_one_clear_line(monkeypatch, caplog):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
    node = MovellaDot.create(sensors=[{"name": "thigh", "address": "D4:22:CD:00:00:01"}],
                             rate_hz=30, backend="bleak", reconnect_max_s=0.2, scan_timeout_s=0.2)
    with caplog.at_level(logging.DEBUG):
        node.on_start()
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                node.poll(0.05)
        finally:
            node.on_stop()
            node.teardown()
    assert node.stats.extra["sensors"]["thigh"]["connect_failures"] >= 3  # it kept trying
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert "BLE unavailable on this host: no D-Bus system bus" in line
    assert "systemctl start dbus bluetooth" in line and "bluetoothctl show" in line
    assert "\n" not in line


def test_service_problems_are_named_and_device_problems_are_not():
    no_bluez = BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                              ["The name org.bluez was not provided by any .service files"])
    assert "bluetoothd, org.bluez) is not running" in service_problem(no_bluez)
    assert "no D-Bus system bus" in service_problem(FileNotFoundError(2, "No such file"))
    assert service_problem(DeviceTimeout("not found in a 5 s scan")) is None
    assert service_problem(TimeoutError()) is None


def test_devices_survey_says_the_same(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
    survey = survey_devices(ble=True, timeout_s=0.3)
    assert survey.ble_scanned is False and survey.ble == []
    assert "no D-Bus system bus" in survey.ble_error
    assert "systemctl start dbus bluetooth" in survey.ble_error
