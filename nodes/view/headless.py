"""Headless viewer: no window; a periodic status line in the log and, optionally, PNG frames.

Off-screen frames come from vispy's EGL backend on Mesa's surfaceless platform (the same
:class:`ChainScene` as the window) when that works, else from matplotlib's Agg software
renderer (:class:`AggChainRenderer`). Everything here runs in the worker's main thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from nodes.view.gui_calls import GuiCalls
from nodes.view.latency_window import LatencyWindow
from nodes.view.pose_slot import PoseSlot
from nodes.view.status_feed import StatusFeed, format_status
from pipeline.kinematics.chain import Chain
from pipeline.runtime.atomic_file import atomic_path
from pipeline.runtime.log_setup import TERMINAL_STATUS_ENV

log = logging.getLogger("imuflow.view.headless")

STATUS_LOG_PERIOD_S = 2.0
FRAME_SIZE = (800, 600)


class OffscreenRenderer:
    """Renders poses to RGBA arrays: vispy + EGL if available, else matplotlib Agg.

    Attributes:
        backend: "vispy-egl" or "matplotlib-agg", whichever is in use.
    """

    def __init__(self, chain: Chain, size: tuple[int, int] = FRAME_SIZE) -> None:
        try:
            os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # Mesa: EGL without X or GPU
            import vispy

            vispy.use(app="egl")
            from nodes.view.chain_scene import ChainScene

            self._scene = ChainScene(chain, size=size)
            self._scene.render()
            self.backend = "vispy-egl"
        except Exception as exc:  # noqa: BLE001 - any EGL failure selects the software renderer
            log.warning("vispy EGL off-screen rendering unavailable (%s: %s); "
                        "using matplotlib Agg software rendering", type(exc).__name__, exc)
            from nodes.view.software_render import AggChainRenderer

            self._scene = None
            self._agg = AggChainRenderer(chain, size)
            self.backend = "matplotlib-agg"

    def render(self, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """(h, w, 4) uint8 RGBA of the pose: pos (n, 3) m, quat (n, 4) wxyz body to earth."""
        if self._scene is not None:
            self._scene.set_pose(pos, quat)
            return self._scene.render()
        return self._agg.render(pos, quat)


def write_png(path: Path, rgba: np.ndarray) -> None:
    """Write an (h, w, 4) uint8 RGBA image as PNG, whole or not at all (temp file + rename)."""
    from vispy.io import write_png as _write

    with atomic_path(path) as tmp:
        _write(str(tmp), rgba)


class HeadlessView:
    """The main-thread loop of a viewer without a display."""

    def __init__(self, chain: Chain, *, pose: PoseSlot, latency: LatencyWindow,
                 status: StatusFeed, observer: str, calls: GuiCalls, png_dir: Path | None,
                 png_every_s: float, logger: logging.LoggerAdapter | logging.Logger = log) -> None:
        self.chain, self.pose, self.latency, self.status = chain, pose, latency, status
        self.observer, self.calls, self.log = observer, calls, logger
        self.png_dir, self.png_every_s = png_dir, png_every_s
        self.renderer: OffscreenRenderer | None = None
        self.frames_written = 0
        self.last_png: str = ""

    def run(self, stop: threading.Event, until: threading.Event | None = None,
            reason: str = "no display") -> None:
        """Loop until ``stop`` or ``until`` (streams ended): status line every 2 s, PNG frames.

        ``reason`` says why there is no window; it opens the one line logged at the start. A
        PNG is written every ``png_every_s`` when png_dir is set and a new pose arrived, plus
        one of the last pose when the streams end.
        """
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
            self.renderer = OffscreenRenderer(self.chain)
            self.log.info("running headless: %s; status in the log every %.0f s, frames to %s "
                          "every %.2f s (renderer: %s)", reason, STATUS_LOG_PERIOD_S,
                          self.png_dir, self.png_every_s, self.renderer.backend)
        else:
            self.log.info("running headless: %s; status in the log every %.0f s (set png_dir "
                          "to write frames)", reason, STATUS_LOG_PERIOD_S)
        # `imuflow run` prints its own status line: two interleaved lines help nobody
        status_level = logging.DEBUG if os.environ.get(TERMINAL_STATUS_ENV) else logging.INFO
        next_status = time.monotonic() + STATUS_LOG_PERIOD_S
        next_png = time.monotonic()
        last_version = -1
        while not stop.wait(0.02):
            self.calls.drain()
            self.status.poll()
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_LOG_PERIOD_S
                self.log.log(status_level, "%s", self.status_line())
            if self.renderer is not None and now >= next_png:
                version, pos, quat, _t = self.pose.get()
                if version > 0 and version != last_version:
                    next_png = now + self.png_every_s
                    last_version = version
                    self._write_frame(pos, quat)
            if until is not None and until.is_set():
                version, pos, quat, _t = self.pose.get()
                if self.renderer is not None and version > 0 and version != last_version:
                    self._write_frame(pos, quat)
                self.log.info("input streams ended: %s", self.status_line())
                return

    def _write_frame(self, pos: np.ndarray, quat: np.ndarray) -> None:
        path = self.png_dir / f"frame_{self.frames_written:06d}.png"
        write_png(path, self.renderer.render(pos, quat))
        self.frames_written += 1
        self.last_png = str(path)

    def status_line(self) -> str:
        """The status text (rates Hz, gaps, model, end-to-end latency ms)."""
        return format_status(self.status.latest, self.observer, latency_ms_p99=self.latency.p99_ms())

    def handle_command(self, command: str, args: dict) -> dict[str, Any] | None:
        """Run a viewer control command; headless knows view_state and screenshot (scene)."""
        if command == "view_state":
            return self.view_state()
        if command == "screenshot" and self.renderer is not None:
            _v, pos, quat, _t = self.pose.get()
            write_png(Path(args["path"]), self.renderer.render(pos, quat))
            return {"ok": True, "path": str(args["path"])}
        return None

    def view_state(self) -> dict[str, Any]:
        """What the headless view did so far (for the ``view_state`` command and tests)."""
        return {"ok": True, "headless": True, "frames_written": self.frames_written,
                "last_png": self.last_png, "pose_version": self.pose.version,
                "renderer": self.renderer.backend if self.renderer else None,
                "status_line": self.status_line()}
