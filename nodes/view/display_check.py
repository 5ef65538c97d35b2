"""Checks made before the viewer starts Qt: is there a display that answers, is the binding sound.

Qt aborts the whole process when its platform plugin cannot open the display (with a hint
about ``xcb-cursor0`` even when that library is installed), and PySide6 6.12.0 on Python 3.11
drops a reference to ``None`` on every Qt call that returns void, so a redrawing window dies
with ``none_dealloc`` after about half a minute. Both are found here in a few milliseconds so
the viewer can run headless with one clear line instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import sys
from pathlib import Path

FIXED_BINDING = "PySide6-Essentials>=6.6,<6.12"


def no_display() -> bool:
    """True when neither an X11 nor a Wayland display is named in the environment."""
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _x11_problem(display: str) -> str:
    """'' when the X server ``display`` accepts a connection (libxcb, as Qt connects), else why."""
    name = ctypes.util.find_library("xcb")
    if name is None:
        return "libxcb is not installed (apt-get install libxcb1), so Qt cannot use X11"
    lib = ctypes.CDLL(name)
    lib.xcb_connect.restype = ctypes.c_void_p
    lib.xcb_connect.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    lib.xcb_connection_has_error.argtypes = (ctypes.c_void_p,)
    lib.xcb_disconnect.argtypes = (ctypes.c_void_p,)
    conn = lib.xcb_connect(display.encode(), None)
    try:
        code = lib.xcb_connection_has_error(conn)
    finally:
        lib.xcb_disconnect(conn)
    if code == 0:
        return ""
    why = {1: "connection error", 2: "unsupported extension", 3: "out of memory",
           4: "request too long", 5: "cannot parse the display name", 6: "no such screen"}
    return (f"DISPLAY={display} does not answer ({why.get(code, f'xcb error {code}')}; a stale "
            "DISPLAY from an old ssh or desktop session?)")


def _wayland_problem(display: str) -> str:
    """'' when the Wayland socket ``display`` accepts a connection, else why."""
    path = Path(display)
    if not path.is_absolute():
        path = Path(os.environ.get("XDG_RUNTIME_DIR", "/run/user/%d" % os.getuid())) / display
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError as exc:
            return f"WAYLAND_DISPLAY={display} does not answer ({path}: {exc.strerror or exc})"
    return ""


def display_problem() -> str:
    """'' when the display named by DISPLAY (else WAYLAND_DISPLAY) answers; else one line why not."""
    x11, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if not (x11 or wayland):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if x11 and (not wayland or platform.startswith("xcb")):
        return _x11_problem(x11)
    return _wayland_problem(wayland)


def binding_problem(calls: int = 200) -> str:
    """'' when PySide6 keeps None's reference count across Qt calls; else one line with the fix.

    Counts how many references to ``None`` a few hundred void calls take away (best of three
    tries, so other threads cannot fake a loss) and gives back what the test itself took.
    """
    if sys.version_info >= (3, 12):  # None is immortal: a lost reference cannot free it
        return ""
    import PySide6
    from PySide6 import QtCore

    rect = QtCore.QRectF(0.0, 0.0, 1.0, 1.0)
    lost = calls
    for _ in range(3):
        before = sys.getrefcount(None)
        for _ in range(calls):
            rect.setWidth(1.0)
        taken = before - sys.getrefcount(None)
        for _ in range(max(taken, 0)):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))
        lost = min(lost, taken)
    if lost < calls // 2:
        return ""
    return (f"PySide6 {PySide6.__version__} loses a reference to None on every Qt call on "
            f"Python {sys.version_info.major}.{sys.version_info.minor}, so the window would "
            f"abort within a minute (none_dealloc); install a sound binding: "
            f"pip install '{FIXED_BINDING}'")
