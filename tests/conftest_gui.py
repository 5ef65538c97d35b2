"""GUI test fixtures (pytest plugin, loaded with ``pytest_plugins``): a real Xvfb X server, a QApplication.

Xvfb picks a free display number itself (``-displayfd``); nothing depends on pytest-xvfb.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from collections.abc import Iterator

import pytest

XVFB_PACKAGES = ("xvfb libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 "
                 "libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 "
                 "libxcb-render-util0 libxcb-image0 libdbus-1-3 libfontconfig1")


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """Start Xvfb (1280x800x24, Mesa software OpenGL) on a free display; yield ":N"."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail(f"Xvfb is not installed; as root: apt-get install {XVFB_PACKAGES}")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = b""
        while not number.endswith(b"\n"):  # the whole line, or Xvfb dies of SIGPIPE later
            ready, _, _ = select.select([read_fd], [], [], 20.0)
            chunk = os.read(read_fd, 32) if ready else b""
            if not chunk:
                break
            number += chunk
        number = number.decode().strip()
        if not number:
            pytest.fail("Xvfb did not report a display number within 20 s")
        yield f":{number}"
    finally:
        os.close(read_fd)
        # Qt keeps its X connection until the interpreter exits and aborts if the server
        # goes away first: stop Xvfb only once this test process has ended.
        watch = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.2; done; "
                 f"kill {proc.pid}")
        subprocess.Popen(["sh", "-c", watch], start_new_session=True)


@pytest.fixture
def display(xvfb_display: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point DISPLAY at the test X server for this test (and the processes it starts)."""
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    return xvfb_display


@pytest.fixture(scope="session")
def qapp(xvfb_display: str):
    """The process's QApplication on the test X server, with vispy on PySide6."""
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = xvfb_display
    try:
        import vispy

        vispy.use("pyside6")
        from PySide6 import QtWidgets

        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["imuflow-tests"])
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
    return app
