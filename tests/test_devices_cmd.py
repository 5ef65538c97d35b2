"""``imuflow devices``: real serial listing, BLE via the fake scanner, and no Bluetooth at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from serial.tools.list_ports import comports

from pipeline.cli import main
from tests import fake_bleak as fb
from tests.conftest import REPO


def test_fake_ble_devices_are_listed_with_type_and_rssi(capsys):
    fb.reset()
    fb.add_device(fb.FakeDot("D4:22:CD:00:00:01", rssi=-55))
    fb.add_device(fb.FakeWitMotion("E8:00:00:00:00:01", rssi=-70))
    try:
        assert main(["devices", "--json", "--timeout", "0.1", "--backend", "tests.fake_bleak"]) == 0
    finally:
        fb.reset()
    out = json.loads(capsys.readouterr().out)
    assert out["ble_error"] is None and out["ble_scanned"] is True
    assert [(d["address"], d["kind"], d["rssi_dbm"], d["name"]) for d in out["ble"]] == [
        ("D4:22:CD:00:00:01", "movella_dot", -55, "Movella DOT"),
        ("E8:00:00:00:00:01", "witmotion", -70, "WT901BLE68")]
    assert sorted(p["device"] for p in out["serial"]) == sorted(p.device for p in comports())


def test_text_output_names_the_driver_to_use(capsys):
    fb.reset()
    fb.add_device(fb.FakeDot("D4:22:CD:00:00:01"))
    try:
        assert main(["devices", "--timeout", "0.1", "--backend", "tests.fake_bleak"]) == 0
    finally:
        fb.reset()
    text = capsys.readouterr().out
    assert "Serial ports:" in text and "D4:22:CD:00:00:01" in text
    assert "drivers.movella_dot.MovellaDot" in text


def test_no_ble_skips_the_scan(capsys):
    assert main(["devices", "--no-ble", "--json", "--backend", "no.such.module"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ble_scanned"] is False and out["ble"] == [] and out["ble_error"] is None


def test_without_bluetooth_it_says_so_and_still_lists_serial_ports():
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/imuflow-no-bus")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "devices", "--json", "--timeout", "0.5"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ble"] == [] and out["ble_error"]
    assert out["ble_scanned"] is False  # a scan that failed did not scan
    assert "Bluetooth" in out["ble_error"]
    assert sorted(p["device"] for p in out["serial"]) == sorted(p.device for p in comports())
    text = subprocess.run([sys.executable, "-m", "pipeline", "devices", "--timeout", "0.5"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)
    assert text.returncode == 0 and "BLE scan not possible" in text.stdout
