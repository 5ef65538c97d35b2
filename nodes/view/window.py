"""The viewer's Qt main window: 3D chain view, rolling plots, toolbar with model picker, status bar."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from nodes.view.calibration_capture import CalibrationCapture
from nodes.view.calibration_panel import CalibrationPanel
from nodes.view.chain_scene import ChainScene
from nodes.view.command_client import ObserverClient
from nodes.view.gui_calls import GuiCalls
from nodes.view.latency_window import LatencyWindow
from nodes.view.model_picker import ModelPicker
from nodes.view.pose_slot import PoseSlot
from nodes.view.sample_ring import SampleRings
from nodes.view.scene_image import SceneImage
from nodes.view.signal_plots import SignalPlots
from nodes.view.status_feed import StatusFeed, format_status, running_model
from pipeline.calibration.still_pose import NEUTRAL
from pipeline.kinematics.chain import Chain
from pipeline.runtime.atomic_file import atomic_path

PLOT_RATE_HZ = 30.0
STATUS_PERIOD_MS = 500
KEYS_HELP = "keys: space pause, r reset, m model, c calibrate, h heading, q quit"


class ViewerWindow(QtWidgets.QMainWindow):
    """One window per viewer node; every method runs in the Qt main thread.

    Data comes in through thread-safe buffers (``pose``, ``rings``) filled by the node's bus
    thread; a QTimer at ``fps`` draws the newest pose, plots refresh at up to 30 Hz.
    """

    def __init__(self, chain: Chain, *, pose: PoseSlot, rings: SampleRings, latency: LatencyWindow,
                 status: StatusFeed, client: ObserverClient, model_dirs: tuple[Path, ...],
                 observer: str, fps: float, stop: threading.Event, calls: GuiCalls,
                 on_close: Callable[[], None], title: str = "imuflow",
                 heading: ObserverClient | None = None,
                 capture: CalibrationCapture | None = None, run_dir: Path | None = None,
                 torque: bool = False, calibration_pose: str = NEUTRAL) -> None:
        super().__init__()
        self.pose, self.rings, self.latency, self.status = pose, rings, latency, status
        self.observer, self.stop, self.calls, self._on_close = observer, stop, calls, on_close
        self.setWindowTitle(f"{title}: {chain.name}")
        self.resize(1280, 760)
        self.scene = ChainScene(chain, size=(640, 600))
        self.scene_view = SceneImage(self.scene)
        self.plots = SignalPlots(rings, tuple(chain.body_names[i] for i in chain.hinge_bodies),
                                 torque=torque)
        self.picker = ModelPicker(client, model_dirs)
        self.heading = heading or ObserverClient(run_dir, "orientation")
        self.calibration = CalibrationPanel(chain, capture or CalibrationCapture(), run_dir)
        self.calibration_pose = calibration_pose  # what Calibrate (button, key c) asks for
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(self.scene_view)
        splitter.addWidget(self.plots)
        splitter.setSizes([660, 620])
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.calibration)
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self._build_toolbar()
        self.status_label = QtWidgets.QLabel("waiting for data")
        self.statusBar().addWidget(self.status_label, 1)
        self.status_label.setToolTip(KEYS_HELP)
        self.paused = False
        self.frames_drawn = 0
        self._drawn_version = -1
        self._fps = 0.0
        self._fps_t0, self._fps_n = time.monotonic(), 0
        self._next_plot = 0.0
        self._shortcuts()
        self.frame_timer = QtCore.QTimer(self)
        self.frame_timer.timeout.connect(self.tick)
        self.frame_timer.start(max(1, round(1000.0 / fps)))
        self.status_timer = QtCore.QTimer(self)
        self.status_timer.timeout.connect(self.refresh_status)
        self.status_timer.start(STATUS_PERIOD_MS)

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("controls")
        bar.setMovable(False)
        self.pause_action = QtGui.QAction("Pause", self, checkable=True)
        self.pause_action.toggled.connect(self.set_paused)
        bar.addAction(self.pause_action)
        reset = QtGui.QAction("Reset state", self)
        reset.triggered.connect(self.picker.reset_state)
        bar.addAction(reset)
        heading = QtGui.QAction("Reset heading", self)
        heading.setToolTip("the root's current heading reads 0 from now on (orientation node); "
                           "spherical joints align to the zero pose (constraint observer)")
        heading.triggered.connect(self.reset_heading)
        bar.addAction(heading)
        calibrate = QtGui.QAction("Calibrate", self)
        calibrate.setToolTip("guided sensor-to-segment calibration (as `imuflow calibrate`)")
        calibrate.triggered.connect(lambda: self.start_calibration(pose=self.calibration_pose))
        bar.addAction(calibrate)
        bar.addSeparator()
        bar.addWidget(self.picker)
        bar.addSeparator()
        keys = QtWidgets.QLabel(f"  {KEYS_HELP}  ")
        keys.setStyleSheet("color: gray")
        bar.addWidget(keys)

    def _shortcuts(self) -> None:
        ctx = QtCore.Qt.ShortcutContext.ApplicationShortcut
        for key, slot in (("Space", self.pause_action.toggle), ("R", self.picker.reset_state),
                          ("Q", self.close), ("M", self.focus_picker),
                          ("C", lambda: self.start_calibration(pose=self.calibration_pose)),
                          ("H", self.reset_heading)):
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            sc.setContext(ctx)
            sc.activated.connect(slot)

    def reset_heading(self) -> None:
        """Ask the orientation node for ``heading_reset`` (its reply shows beside the picker),
        and the observer too: the constraint observer aligns its spherical joints' headings
        (any other observer declines; both replies are logged)."""
        self.picker.show_reply_of("heading_reset", self.heading.submit("heading_reset",
                                                                       timeout_s=5.0))
        self.picker.client.submit("heading_reset", timeout_s=5.0)

    def start_calibration(self, **args: float | str) -> dict:
        """Run the guided calibration (lead_in_s, static_s, functional_s, pose; defaults as
        the CLI)."""
        try:
            return self.calibration.begin(**args)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    def focus_picker(self) -> None:
        """Give the model combo box the keyboard focus and open its list."""
        self.picker.combo.setFocus()
        self.picker.combo.showPopup()

    def set_paused(self, paused: bool) -> None:
        """Freeze (True) or resume (False) the view; data keeps flowing into the buffers."""
        self.paused = bool(paused)
        self.pause_action.setText("Resume" if paused else "Pause")
        if self.pause_action.isChecked() != self.paused:
            self.pause_action.setChecked(self.paused)

    def _count_frame(self, _event: Any = None) -> None:
        self.frames_drawn += 1
        self._fps_n += 1
        now = time.monotonic()
        if now - self._fps_t0 >= 1.0:
            self._fps = self._fps_n / (now - self._fps_t0)
            self._fps_t0, self._fps_n = now, 0

    def tick(self) -> None:
        """Frame timer: run queued calls, stop if asked, draw the newest pose and the plots."""
        self.calls.drain()
        if self.stop.is_set():
            self.close()
            return
        if self.paused:
            return
        version, pos, quat, _t = self.pose.get()
        if version != self._drawn_version:
            self._drawn_version = version
            self.scene.set_pose(pos, quat)
            self.scene_view.mark_dirty()
        if self.scene_view.redraw():
            self._count_frame()
        now = time.monotonic()
        if now >= self._next_plot:
            self._next_plot = now + 1.0 / PLOT_RATE_HZ
            self.plots.refresh()

    def refresh_status(self) -> None:
        """Status timer: read the supervisor feed and update the status bar."""
        if self.status.poll():
            self.picker.show_running(running_model(self.status.latest, self.observer))
        self.status_label.setText(self.status_line())

    def status_line(self) -> str:
        """The status bar text (rates Hz, gaps, model, end-to-end latency ms, frames/s)."""
        line = format_status(self.status.latest, self.observer, latency_ms_p99=self.latency.p99_ms(),
                             viewer_fps=self._fps)
        return ("PAUSED | " if self.paused else "") + line

    def view_state(self) -> dict:
        """What the window shows now (for the viewer's ``view_state`` command and tests)."""
        return {"ok": True, "headless": False, "frames_drawn": self.frames_drawn,
                "pose_version": self._drawn_version, "samples_drawn": self.plots.samples_drawn,
                "torque_samples_drawn": self.plots.torque_samples_drawn,
                "paused": self.paused, "status_line": self.status_line(),
                "model_reply": self.picker.last_reply,
                "model_reply_text": self.picker.reply_text, "fps": self._fps,
                "sensors": self.rings.names(), "calibration": self.calibration.state_dict()}

    def handle_command(self, command: str, args: dict) -> dict | None:
        """Run a viewer control command (view_state, screenshot, pick_model, pause, close,
        calibrate {lead_in_s, static_s, functional_s, pose}, calibration_state,
        heading_reset)."""
        if command == "view_state":
            return self.view_state()
        if command == "calibrate":
            known = ("lead_in_s", "static_s", "functional_s")
            return self.start_calibration(
                **{k: float(v) for k, v in args.items() if k in known},
                pose=str(args.get("pose", self.calibration_pose)))  # as the button
        if command == "calibration_state":
            return {"ok": True, **self.calibration.state_dict()}
        if command == "heading_reset":
            self.reset_heading()
            return {"ok": True, "sent": True}
        if command == "screenshot":
            return {"ok": True, "path": self.save_screenshot(Path(args["path"]),
                                                             str(args.get("what", "window")))}
        if command == "pick_model":
            future = self.picker.swap_to(Path(args["model"]))
            return {"ok": True, "sent": True, "done": future.done()}
        if command == "pause":
            self.set_paused(bool(args.get("on", True)))
            return {"ok": True, "paused": self.paused}
        if command == "close":
            QtCore.QTimer.singleShot(0, self.close)  # after the reply has gone out
            return {"ok": True}
        return None

    def save_screenshot(self, path: Path, what: str = "window") -> str:
        """Write a PNG of the whole window ("window") or the 3D view only ("scene")."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a failed shot leaves an existing file as it was
            if what == "scene":
                from vispy.io import write_png
                write_png(str(tmp), self.scene.render())
            elif not self.grab().save(str(tmp), "PNG"):
                raise OSError(f"could not write screenshot {path}")
        return str(path)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Closing the window stops the graph (via the on_close callback)."""
        self.frame_timer.stop()
        self.status_timer.stop()
        self.calibration.shutdown()
        self.heading.close()
        self._on_close()
        event.accept()
