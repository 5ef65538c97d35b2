"""Model picker: lists the ONNX models the graph may load and asks the observer to swap."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from nodes.view.command_client import ObserverClient

REASON_CHARS = 90  # longer reasons are cut in the label; the tooltip has the whole reply


NOT_OBSERVER_SCHEMAS = ("imuflow.dynamics_card/1",)  # models the observer cannot run


def _card_schema(onnx: Path) -> str:
    """The ``schema`` of the card beside ``onnx`` ('' when there is none or it is unreadable)."""
    try:
        return str(json.loads(onnx.with_suffix(".json").read_text(encoding="utf-8"))
                   .get("schema", ""))
    except (OSError, ValueError, AttributeError):
        return ""  # the observer says what is wrong with it when picked


def list_models(model_dirs: tuple[Path, ...]) -> list[Path]:
    """Every ``*.onnx`` file in ``model_dirs`` (not recursive), sorted by name, except those
    whose card says they are for another node (inverse dynamics: ``imuflow swap RUN dynamics``)."""
    found: dict[Path, None] = {}
    for d in model_dirs:
        if Path(d).is_dir():
            for p in sorted(Path(d).glob("*.onnx")):
                if _card_schema(p) not in NOT_OBSERVER_SCHEMAS:
                    found[p.resolve()] = None
    return sorted(found, key=lambda p: p.name)


class ModelPicker(QtWidgets.QWidget):
    """Combo box of models, a swap button and the observer's last reply.

    The swap runs in :class:`ObserverClient`'s thread; the reply comes back to the GUI
    thread through the ``replied`` signal, so a slow model load never freezes the window.
    """

    replied = QtCore.Signal(str, dict)  # command, reply

    def __init__(self, client: ObserverClient, model_dirs: tuple[Path, ...],
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.client, self.model_dirs = client, model_dirs
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QtWidgets.QLabel("Model:"))
        self.combo = QtWidgets.QComboBox()
        self.combo.setMinimumContentsLength(18)
        self.combo.setToolTip("ONNX models in the graph's model_dirs (m)")
        layout.addWidget(self.combo, 1)
        self.swap_button = QtWidgets.QPushButton("Swap")
        self.swap_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.swap_button.clicked.connect(self.swap_selected)
        layout.addWidget(self.swap_button)
        self.reply_label = QtWidgets.QLabel("")
        self.reply_label.setMinimumWidth(160)
        layout.addWidget(self.reply_label, 1)
        self.last_reply: dict = {}
        self.replied.connect(self._show_reply)
        self.refresh_models()

    def refresh_models(self) -> None:
        """Re-read the model folders."""
        current = self.combo.currentData()
        self.combo.clear()
        for p in list_models(self.model_dirs):
            self.combo.addItem(p.name, str(p))
        if not self.combo.count():
            self.combo.addItem("(no *.onnx in model_dirs)", None)
        i = self.combo.findData(current)
        if i >= 0:
            self.combo.setCurrentIndex(i)

    def show_running(self, model: str) -> None:
        """Select the entry of the running ``model`` (card name or file stem) unless the user is choosing."""
        if not model or self.combo.hasFocus() or self.combo.view().isVisible():
            return
        for i in range(self.combo.count()):
            data = self.combo.itemData(i)
            if data and Path(data).stem == model and i != self.combo.currentIndex():
                self.combo.setCurrentIndex(i)
                return

    def swap_selected(self) -> None:
        """Send ``swap`` for the selected model (no-op if there is none)."""
        path = self.combo.currentData()
        if path:
            self.swap_to(Path(path))

    def swap_to(self, model: Path) -> concurrent.futures.Future:
        """Ask the observer to load ``model``; the reply shows up beside the button."""
        self.reply_label.setText(f"loading {model.name} ...")
        self.swap_button.setEnabled(False)
        return self._send("swap", self.client.swap(model))

    def reset_state(self) -> concurrent.futures.Future:
        """Ask the observer to reset its recurrent state."""
        return self._send("reset", self.client.reset())

    def _send(self, cmd: str, future: concurrent.futures.Future) -> concurrent.futures.Future:
        future.add_done_callback(lambda f: self.replied.emit(cmd, _reply_of(f)))
        return future

    def show_reply_of(self, cmd: str, future: concurrent.futures.Future
                      ) -> concurrent.futures.Future:
        """Show the reply of another node's command (e.g. heading_reset) beside the button."""
        self.reply_label.setText(f"{cmd} ...")
        return self._send(cmd, future)

    def _show_reply(self, cmd: str, reply: dict) -> None:
        self.last_reply = dict(reply, cmd=cmd)
        self.swap_button.setEnabled(True)
        if reply.get("ok"):
            self.reply_label.setText(f"{cmd}: {reply_detail(cmd, reply)}")
            self.reply_label.setStyleSheet("color: #8fd18f")
        else:
            why = refusal_reason(reply)
            short = why if len(why) <= REASON_CHARS else why[:REASON_CHARS - 3] + "..."
            self.reply_label.setText(f"{cmd} refused: {short}")
            self.reply_label.setStyleSheet("color: #f08080")
        self.reply_label.setToolTip(str(reply))

    @property
    def reply_text(self) -> str:
        """What the label beside the Swap button says now."""
        return self.reply_label.text()


def reply_detail(cmd: str, reply: dict) -> str:
    """What an accepted command did, in a few words."""
    if cmd == "swap" and reply.get("new"):  # the observer's swap reply: old, new, timings
        took_ms = sum(float(reply.get(k, 0)) for k in ("load_ms", "check_ms", "warmup_ms"))
        return f"{reply.get('old', '?')} -> {reply['new']} ({took_ms:.0f} ms)"
    if cmd == "heading_reset" and "removed_deg" in reply:
        return f"{float(reply['removed_deg']):+.1f} deg of heading removed"
    return str(reply.get("message") or "ok")


def refusal_reason(reply: dict) -> str:
    """Why a command was refused: the node's ``reason``, else the transport's ``error``."""
    return str(reply.get("reason") or reply.get("error") or "no reason given")


def _reply_of(future: concurrent.futures.Future) -> dict:
    if future.cancelled():
        return {"ok": False, "error": "cancelled"}
    exc = future.exception()
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"} if exc else future.result()
