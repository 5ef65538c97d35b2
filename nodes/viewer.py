"""Viewer: the live window (vispy 3D chain + pyqtgraph plots + status + model picker).

Data flow: ``on_block`` runs in the node's bus thread and only fills thread-safe buffers
(newest pose wins; preallocated ring buffers for the plots). The Qt window lives in the
worker's main thread (``main_thread = True``) and reads those buffers on a QTimer, so a slow
frame never blocks the bus. Without a display the viewer runs headless (status line in the
log, optional PNG frames). Closing the window stops the whole graph.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nodes.view.calibration_capture import CalibrationCapture
from nodes.view.command_client import ObserverClient
from nodes.view.display_check import binding_problem, display_problem
from nodes.view.gui_calls import GuiCalls
from nodes.view.headless import HeadlessView
from nodes.view.latency_window import LatencyWindow
from nodes.view.pose_slot import PoseSlot
from nodes.view.sample_ring import SampleRings
from nodes.view.status_feed import StatusFeed
from pipeline.calibration.still_pose import NEUTRAL, find_pose
from pipeline.kinematics.chain import Chain, load_chain
from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input, QueuePolicy
from pipeline.runtime.streams import FRAME, POSE, RAW_IMU, STATE, TORQUE, TRUTH
from pipeline.runtime.supervisor import supervisor_ctl_endpoint

GUI_COMMANDS = ("view_state", "screenshot", "pick_model", "pause", "close", "calibrate",
                "calibration_state", "heading_reset")


@dataclass(frozen=True)
class ViewerParams:
    """YAML ``params`` of the viewer."""

    chain: str = ""  # chain file; "" = the graph's top-level ``chain:``
    observer: str = "observer"  # node id the model picker and reset button talk to
    orientation: str = "orientation"  # node id the Reset heading button talks to
    fps: float = 60.0  # redraw rate of the 3D view, frames/s
    headless: Any = "auto"  # "auto" (window when the display answers), true, false (window)
    png_dir: str = ""  # write rendered frames here as PNG (off screen); "" = off
    png_every_s: float = 1.0  # seconds between PNG frames
    plot_window_s: float = 10.0  # length of the rolling plots, s
    calibration_pose: str = NEUTRAL  # still pose Calibrate asks for (the chain's poses:)

    def __post_init__(self) -> None:
        if self.headless not in ("auto", True, False):
            raise ValueError(f"headless must be 'auto', true or false, got {self.headless!r}")
        if not 1.0 <= self.fps <= 240.0:
            raise ValueError(f"fps must be within 1..240 frames/s, got {self.fps}")
        if self.png_every_s <= 0 or self.plot_window_s <= 0:
            raise ValueError("png_every_s and plot_window_s must be > 0 s")


class Viewer(Node):
    """Live view of a chain: 3D pose, IMU signals, joint angles with ground truth, joint
    torques, status.

    Ports:
        pose: chain.pose (pos (n_bodies, 3) m earth frame z up; quat (n_bodies, 4) wxyz body
            to earth); drop_oldest, queue 2: only the newest pose is drawn.
        imu: imu.frame or imu.raw (acc m/s^2, gyr rad/s, sensor frame), optional, many.
        state: chain.state (angle (n_hinge,) rad), optional: estimated hinge angles.
        truth: chain.truth (same dtype as chain.state), optional: ground truth overlay.
        torque: chain.torque (tau (n_dof,) N m or N, from a dynamics node), optional: a
            fourth plot of the joint torques (N m degrees of freedom).

    Commands (control socket): view_state, screenshot {path, what: window|scene},
    pick_model {model}, pause {on}, close; the GUI actions run in the main thread.
    """

    inputs: ClassVar[dict[str, Input]] = {
        "pose": Input(accepts=(POSE,), policy=QueuePolicy.DROP_OLDEST, queue_size=2),
        "imu": Input(accepts=(FRAME, RAW_IMU), many=True, required=False),
        "state": Input(accepts=(STATE,), required=False),
        "truth": Input(accepts=(TRUTH,), required=False),
        "torque": Input(accepts=(TORQUE,), required=False),
    }
    outputs = ()
    main_thread = True
    Params = ViewerParams

    def setup(self) -> None:
        p = self.params
        self.chain: Chain = self._load_chain()
        try:
            find_pose(self.chain, p.calibration_pose)
        except ValueError as exc:
            raise ConfigError(f"node '{self.id}': calibration_pose: {exc}",
                              file=str(self.context.config_file or ""),
                              key="calibration_pose") from None
        self.pose = PoseSlot(self.chain.n_bodies)
        self.rings = SampleRings(p.plot_window_s)
        self.latency = LatencyWindow()
        self.calls = GuiCalls()
        self.capture = CalibrationCapture()  # the imu input while the window calibrates
        self._view: Any = None  # ViewerWindow or HeadlessView, set in the main thread
        self._view_ready = threading.Event()
        self.inputs_ended = threading.Event()  # every input stream ended (headless view exits)

    def _load_chain(self) -> Chain:
        where = f"node '{self.id}': "
        path = self.context.resolve(self.params.chain) if self.params.chain else self.context.chain_file
        if path is None:
            raise ConfigError(f"{where}no chain to draw: set params.chain to a chain file or "
                              "give the graph a top-level 'chain:'",
                              file=str(self.context.config_file or ""), key="chain")
        return load_chain(path)

    # -- bus thread ------------------------------------------------------------------------------
    def on_block(self, port: str, block: Block) -> None:
        d = block.data
        if port == "pose":
            pos, quat = d["pos"], d["quat"]
            if pos.shape[1:] != (self.chain.n_bodies, 3):
                raise ValueError(f"node '{self.id}': pose from {block.info.stream} has "
                                 f"{pos.shape[1]} bodies, chain '{self.chain.name}' has "
                                 f"{self.chain.n_bodies}; draw with the same chain file")
            self.pose.put(pos[-1], quat[-1], int(d["t_host"][-1]))
            self.latency.record(int(d["t_host"][-1]))
        elif port == "imu":
            self._on_imu(block)
        elif port in ("state", "truth"):
            kind = "estimate" if port == "state" else "truth"
            self.rings.add_angles(kind, d["t_host"], d["angle"].reshape(len(d), -1),
                                  block.info.rate_hz)
        elif port == "torque":
            meta = block.info.meta
            self.rings.add_torques(d["t_host"], d["tau"].reshape(len(d), -1), block.info.rate_hz,
                                   meta.get("dofs"), meta.get("units"))

    def _on_imu(self, block: Block) -> None:
        d, info = block.data, block.info
        capture = self.capture
        if info.kind == FRAME:
            names = list(info.meta.get("imus") or [f"imu{i}" for i in range(d["acc"].shape[1])])
            frames = info.meta.get("frames") or []
            for i, name in enumerate(names):
                self.rings.add_imu(name, d["t_host"], d["acc"][:, i], d["gyr"][:, i], info.rate_hz)
                if capture.armed:
                    capture.add(name, d["t_host"], d["acc"][:, i], d["gyr"][:, i],
                                segment_frame=i < len(frames) and frames[i] == "segment")
        else:
            name = info.source or info.stream
            self.rings.add_imu(name, d["t_host"], d["acc"], d["gyr"], info.rate_hz)
            if capture.armed:
                capture.add(name, d["t_host"], d["acc"], d["gyr"])

    def on_eos(self) -> None:
        self.inputs_ended.set()

    def on_command(self, command: str, args: dict) -> Any:
        if command not in GUI_COMMANDS:
            return super().on_command(command, args)
        if not self._view_ready.wait(10.0):
            return {"ok": False, "error": f"node '{self.id}': the view is not up yet"}
        return self.calls.call(lambda: self._gui_command(command, args))

    # -- main thread -----------------------------------------------------------------------------
    def screenshot_path(self, path: str) -> Path:
        """Where a screenshot goes: absolute paths as given, relative ones inside the run folder.

        Raises ValueError for a relative path that leaves the run folder (``..``).
        """
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        base = (self.context.run_dir or Path.cwd()).resolve()
        full = (base / p).resolve()
        if not full.is_relative_to(base):
            raise ValueError(f"node '{self.id}': screenshot path {path!r} leaves the run folder "
                             f"{base}; give an absolute path to write elsewhere")
        return full

    def _gui_command(self, command: str, args: dict) -> dict:
        if command == "screenshot":
            if not args.get("path"):
                return {"ok": False, "error": "screenshot needs args {\"path\": \"file.png\"}"}
            try:
                args = dict(args, path=str(self.screenshot_path(str(args["path"]))))
            except ValueError as exc:
                return {"ok": False, "error": str(exc)}
        reply = self._view.handle_command(command, args)
        if reply is None:
            kind = "headless view" if self._headless() else "window"
            return {"ok": False, "error": f"'{command}' is not available in the {kind}"}
        return reply

    def _headless(self) -> bool:
        return isinstance(self._view, HeadlessView)

    def headless_reason(self) -> str:
        """Why this viewer cannot or should not open a window ('' = open one); main thread."""
        if self.params.headless is True:
            return "headless: true in the graph"
        why = display_problem() or binding_problem()
        if why and self.params.headless is False:
            why = f"a window was asked for (headless: false) but {why}"
        return why

    def run_main_thread(self, stop: threading.Event) -> None:
        """Run the window (or the headless loop) until it closes or ``stop`` is set."""
        run_dir = self.context.run_dir
        status = StatusFeed(run_dir)
        client = ObserverClient(run_dir, self.params.observer)
        try:
            reason = self.headless_reason()
            if reason:
                self._run_headless(stop, status, reason)
            else:
                self._run_window(stop, status, client)
        finally:
            self.calls.cancel_pending("the viewer closed")
            client.close()
            status.close()
            self.log.info("viewer closed")

    def _run_headless(self, stop: threading.Event, status: StatusFeed, reason: str) -> None:
        png = Path(self.params.png_dir) if self.params.png_dir else None
        self._view = HeadlessView(self.chain, pose=self.pose, latency=self.latency, status=status,
                                  observer=self.params.observer, calls=self.calls, png_dir=png,
                                  png_every_s=self.params.png_every_s, logger=self.log)
        self._view_ready.set()
        self._view.run(stop, until=self.inputs_ended, reason=reason)

    def _run_window(self, stop: threading.Event, status: StatusFeed, client: ObserverClient) -> None:
        import vispy

        vispy.use("pyside6")
        from PySide6 import QtWidgets

        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["imuflow-viewer"])
        window = self.build_window(status, client, stop)
        self._view = window
        window.show()
        self._view_ready.set()
        self.log.info("window open (%s, %d bodies)", self.chain.name, self.chain.n_bodies)
        app.exec()
        # tear the window down here, in order: GL canvas first, while the X connection is up
        window.scene.canvas.close()
        window.deleteLater()
        app.processEvents()
        self._view = None

    def build_window(self, status: StatusFeed, client: ObserverClient,
                     stop: threading.Event) -> Any:
        """The ViewerWindow on this node's buffers (main thread; a QApplication must exist)."""
        from nodes.view.window import ViewerWindow

        return ViewerWindow(self.chain, pose=self.pose, rings=self.rings, latency=self.latency,
                            status=status, client=client, model_dirs=self.context.model_dirs,
                            observer=self.params.observer, fps=self.params.fps, stop=stop,
                            calls=self.calls, on_close=lambda: self._closed(stop),
                            title=f"imuflow {self.id}",
                            heading=ObserverClient(self.context.run_dir, self.params.orientation),
                            capture=self.capture, run_dir=self.context.run_dir,
                            torque=bool(self.context.sources.get("torque")),
                            calibration_pose=self.params.calibration_pose)

    def _closed(self, stop: threading.Event) -> None:
        """The window closed: ask the supervisor to stop the graph (this process too)."""
        from PySide6 import QtWidgets

        QtWidgets.QApplication.instance().quit()
        if stop.is_set() or self.context.run_dir is None:
            stop.set()
            return
        self.log.info("window closed: stopping the graph")
        try:
            send_command(supervisor_ctl_endpoint(self.context.run_dir), "stop", timeout_s=2.0)
        except ControlTimeout as exc:
            self.log.warning("supervisor did not answer stop (%s); stopping this process only", exc)
            stop.set()
