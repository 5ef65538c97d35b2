"""The window's guided calibration: prompts, a progress bar per step, then the file and its use.

The procedure is the one of ``imuflow calibrate CONFIG`` (phases, prompts, timings and margins
from :mod:`pipeline.calibration.procedure`): get into the neutral pose, hold it still, flex
and extend each joint. While it runs, the viewer's ``imu`` input is kept
(:class:`~nodes.view.calibration_capture.CalibrationCapture`); at the end the rotations are
estimated off the GUI thread (:func:`~pipeline.calibration.session_input.calibrate_samples`,
the phases as prompted) and written as ``calibration.yaml`` into the run folder. The panel
then says where the file is, how a graph uses it, that the run folder goes when the graph
stops, and offers Save as... to keep it. Every method runs in the Qt main thread.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from nodes.view.calibration_capture import CalibrationCapture
from pipeline.calibration import CalibrationError, write_calibration
from pipeline.calibration.procedure import (
    FUNCTIONAL_S,
    LEAD_IN_S,
    STATIC_S,
    ProcedureClock,
    how_to_use,
    procedure_phases,
    report_lines,
)
from pipeline.calibration.session_input import calibrate_samples
from pipeline.calibration.still_pose import NEUTRAL
from pipeline.kinematics.chain import Chain

RATE_HZ = 100.0  # the estimation's time grid, Hz (as `imuflow calibrate`)
TICK_MS = 50
FILE_NAME = "calibration.yaml"


class CalibrationPanel(QtWidgets.QFrame):
    """Prompt, step, progress bar and result of the live calibration, above the views."""

    finished = QtCore.Signal(object)  # a Calibration, or the exception (from the worker)

    def __init__(self, chain: Chain, capture: CalibrationCapture, out_dir: Path | None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.chain, self.capture = chain, capture
        self.path = (out_dir or Path.cwd()) / FILE_NAME
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setStyleSheet("CalibrationPanel { background: #1f2a36; } QLabel { color: #e8e8e8; }")
        top = QtWidgets.QHBoxLayout()
        title = QtWidgets.QLabel("<b>Calibration</b> (sensor-to-segment)")
        self.step_label = QtWidgets.QLabel("")
        self.time_label = QtWidgets.QLabel("")
        self.save_button = QtWidgets.QPushButton("Save as...")
        self.save_button.clicked.connect(self.save_as)
        self.close_button = QtWidgets.QPushButton("Cancel")
        self.close_button.clicked.connect(self.cancel_or_close)
        for w in (title, self.step_label):
            top.addWidget(w)
        top.addStretch(1)
        for w in (self.time_label, self.save_button, self.close_button):
            top.addWidget(w)
        self.prompt = QtWidgets.QLabel("")
        font = QtGui.QFont(self.prompt.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.prompt.setFont(font)
        self.prompt.setWordWrap(True)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.result = QtWidgets.QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.prompt)
        layout.addWidget(self.progress)
        layout.addWidget(self.result)
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._tick)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="calibrate")
        self.finished.connect(self._show_result)
        self.clock: ProcedureClock | None = None
        self.pose = NEUTRAL  # the still pose the procedure asks for
        self.state = "idle"  # idle, running, calibrating, done, failed, cancelled
        self.step = 0
        self.ok: bool | None = None
        self.message = ""
        self.hide()

    # -- the procedure ---------------------------------------------------------------------------
    def begin(self, lead_in_s: float = LEAD_IN_S, static_s: float = STATIC_S,
              functional_s: float = FUNCTIONAL_S, pose: str = NEUTRAL) -> dict:
        """Start the procedure, still in ``pose`` (ValueError for lengths not > 0 or a pose
        the chain does not name); a running one goes on."""
        if self.state in ("running", "calibrating"):
            return {"ok": False, "error": f"a calibration is already {self.state}"}
        self.clock = ProcedureClock(procedure_phases(self.chain, lead_in_s, static_s,
                                                     functional_s, pose))
        self.pose = pose
        self.capture.start()
        self.state, self.ok, self.message = "running", None, ""
        self.result.setText("")
        self.result.setStyleSheet("")
        self.save_button.hide()
        self.close_button.setText("Cancel")
        self.progress.show()
        self.show()
        self._tick()
        self.timer.start(TICK_MS)
        return {"ok": True, "started": True, "phases": [
            {"step": p.key, "seconds": p.seconds, "prompt": p.prompt} for p in self.clock.phases]}

    def _tick(self) -> None:
        at = self.clock.update(time.monotonic_ns())
        if at is None:
            self.timer.stop()
            self._estimate()
            return
        self.step = at.index + 1
        self.step_label.setText(f"step {self.step}/{len(self.clock.phases)}")
        text = at.phase.prompt[0].upper() + at.phase.prompt[1:]
        if at.index > 0 and not any(self.capture.counts().values()):
            text += ("  (no IMU samples arrive on the viewer's imu input: wire it to "
                     "sync/imu.frame)")
        self.prompt.setText(text)
        self.progress.setValue(round(1000 * at.fraction))
        self.time_label.setText(f"{at.elapsed_s:4.1f} / {at.phase.seconds:g} s")

    def _estimate(self) -> None:
        """The phases are over: estimate the rotations in the worker thread."""
        raw = self.capture.stop()
        segment = sorted(self.capture.in_segment_frames)
        still, motion = self.clock.windows()
        self.state = "calibrating"
        self.step_label.setText("")
        self.time_label.setText("")
        self.prompt.setText("Done moving: estimating the rotations ...")
        self.progress.setRange(0, 0)  # busy
        future = self._pool.submit(self._calibrate, raw, segment, still, motion)
        future.add_done_callback(lambda f: self.finished.emit(
            f.exception() if f.exception() else f.result()))

    def _calibrate(self, raw: dict, segment: list[str], still: tuple[int, int],
                   motion: tuple[int, int]):  # -> Calibration; worker thread
        if segment:
            raise CalibrationError(
                f"the viewer's imu input carries IMU(s) {segment} already in segment frames (a "
                "filter with a calibration or remap): wire the viewer's imu to sync/imu.frame")
        cal = calibrate_samples(raw, self.chain, RATE_HZ, still, motion,
                                source="viewer window: live procedure", pose=self.pose)
        write_calibration(cal, self.path)
        return cal

    def _show_result(self, result: object) -> None:
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.close_button.setText("Close")
        if isinstance(result, BaseException):
            self.state, self.ok = "failed", False
            self.message = (f"calibration failed: {result}" if isinstance(
                result, (ValueError, CalibrationError)) else
                f"calibration failed: {type(result).__name__}: {result}")
            self.prompt.setText("Calibration failed")
            self.result.setText(self.message + "; nothing written. Try again (Calibrate).")
            self.result.setStyleSheet("color: #f08080")
            return
        self.state, self.ok = "done", bool(result.ok)
        verdict = ("Calibrated" if result.ok else
                   "Calibration poor (marked ok: false): repeat the procedure")
        self.message = "\n".join([
            f"wrote {self.path}", how_to_use(self.path),
            "this run folder is removed when the graph stops: Save as... keeps a copy",
            *report_lines(result)])
        self.prompt.setText(verdict)
        self.result.setText(self.message)
        self.result.setStyleSheet("color: #8fd18f" if result.ok else "color: #f0c080")
        self.save_button.show()

    # -- buttons ---------------------------------------------------------------------------------
    def cancel_or_close(self) -> None:
        """Cancel a running procedure, or hide the finished panel."""
        if self.state == "running":
            self.timer.stop()
            self.capture.stop()
            self.state, self.message = "cancelled", "calibration cancelled; nothing written"
        if self.state != "calibrating":
            self.hide()

    def save_as(self) -> None:
        """Copy the written calibration file where the user chooses."""
        target, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save the calibration", str(Path.cwd() / FILE_NAME), "YAML (*.yaml *.yml)")
        if target:
            shutil.copyfile(self.path, target)
            self.result.setText(self.message + f"\nsaved a copy as {target}; "
                                + how_to_use(Path(target)))

    def state_dict(self) -> dict:
        """What the panel shows (for the viewer's ``calibration_state`` command and tests)."""
        return {"state": self.state, "step": self.step, "prompt": self.prompt.text(),
                "progress": self.progress.value() / 1000.0, "visible": self.isVisible(),
                "path": str(self.path) if self.state == "done" else None, "ok": self.ok,
                "message": self.message}

    def shutdown(self) -> None:
        """Stop the timer and the worker (the window closes)."""
        self.timer.stop()
        self.capture.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
