"""Why BLE cannot work on this host at all, in one line with the fix (not a bare exception).

On Linux bleak talks to BlueZ over the D-Bus system bus. Without the bus bleak raises a bare
``FileNotFoundError(2, 'No such file or directory')`` (no path); with the bus but without
``bluetoothd`` a ``BleakDBusError`` ``org.freedesktop.DBus.Error.ServiceUnknown``; without an
adapter (or with it off or blocked) ``BleakBluetoothNotAvailableError`` or a BleakError "No
Bluetooth adapters found". :func:`service_problem` turns these into what is missing and what
to do; any other error (a device out of range, a dropped link) gives None.
"""

from __future__ import annotations

FIX_SERVICE = ("start the D-Bus system bus and the Bluetooth service (sudo systemctl start dbus "
               "bluetooth) and check the adapter (bluetoothctl show; rfkill unblock bluetooth)")
FIX_ADAPTER = ("check that an adapter is present and powered (bluetoothctl show; bluetoothctl "
               "power on; rfkill unblock bluetooth)")


def service_problem(exc: BaseException) -> str | None:
    """What is missing for BLE on this host, and the fix; None if ``exc`` is about a device."""
    name = type(exc).__name__
    text = str(exc)
    if name == "BleakBluetoothNotAvailableError" or "No Bluetooth adapters" in text:
        return f"no usable Bluetooth adapter ({name}: {text}); {FIX_ADAPTER}"
    dbus_error = str(getattr(exc, "dbus_error", "") or "")
    if dbus_error.endswith(("ServiceUnknown", "NameHasNoOwner")) or (
            dbus_error and "org.bluez" in text):
        return (f"the Bluetooth service (bluetoothd, org.bluez) is not running ({dbus_error}); "
                f"{FIX_SERVICE}")
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)) or (
            isinstance(exc, (ConnectionError, EOFError)) and "bus" in text.lower()):
        where = "DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket"
        return (f"no D-Bus system bus to reach the Bluetooth service ({name}: {text}; {where}); "
                f"{FIX_SERVICE}")
    return None
