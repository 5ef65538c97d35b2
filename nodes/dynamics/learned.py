"""A learned inverse-dynamics model: ONNX recurrent network with its card, run step by step.

Card (``models/<name>.json`` beside the ONNX file, schema ``imuflow.dynamics_card/1``)::

    name, onnx_file, sha256, chain (path), rate_hz
    dofs      joint names (hinge bodies), in chain order: the model's d inputs/outputs
    input     {"name": "x", "layout": "q (d), qd (d), qdd (d)", "units": ["rad", "rad/s",
               "rad/s^2"], "features": 3d}; raw SI values in, normalisation inside the graph
    state     [{"input": "h0", "output": "hn", "shape": [layers, hidden]}, ...]
    output    {"name": "y", "target": "residual" | "torque", "units": "N m", "features": d}
              residual: what the rigid-body model misses (added to Newton-Euler's torques);
              torque: the whole joint torque
    training, heldout: free-form recipe and held-out figures

Loading follows the observer's rules: only from inside the graph's model folders, the sha256
must match the card, the ONNX inputs and outputs must be what the card says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.runtime.errors import ModelRejected
from pipeline.runtime.model_files import check_inside, find_model, session_options

SCHEMA = "imuflow.dynamics_card/1"
TARGETS = ("residual", "torque")


@dataclass(frozen=True)
class DynamicsCard:
    """The checked fields of a dynamics model card."""

    name: str
    onnx_file: Path
    sha256: str
    chain: str
    rate_hz: float
    dofs: tuple[str, ...]
    input_name: str
    state: tuple[tuple[str, str, tuple[int, int]], ...]  # (input, output, (layers, hidden))
    output_name: str
    target: str
    raw: dict


def load_dynamics_card(path: Path, model_dirs: tuple[Path, ...]) -> DynamicsCard:
    """Find, read and check a card (``path``: the .onnx file or its .json card)."""
    path = find_model(path, model_dirs)
    card_path = path.with_suffix(".json") if path.suffix == ".onnx" else path
    check_inside(card_path, model_dirs, "model card")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRejected(f"model card {card_path}: cannot read it as JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ModelRejected(f"model card {card_path}: schema must be '{SCHEMA}' (a dynamics "
                            f"model), got {raw.get('schema') if isinstance(raw, dict) else raw!r}")
    try:
        onnx_file = check_inside(card_path.parent / raw["onnx_file"], model_dirs)
        dofs = tuple(str(d) for d in raw["dofs"])
        state = tuple((s["input"], s["output"], (int(s["shape"][0]), int(s["shape"][1])))
                      for s in raw["state"])
        target = raw["output"]["target"]
        card = DynamicsCard(str(raw["name"]), onnx_file, str(raw["sha256"]), str(raw["chain"]),
                            float(raw["rate_hz"]), dofs, str(raw["input"]["name"]), state,
                            str(raw["output"]["name"]), target, raw)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelRejected(f"model card {card_path}: missing or malformed field ({exc!r}); "
                            "see nodes/dynamics/learned.py for the fields") from None
    if target not in TARGETS:
        raise ModelRejected(f"model card {card_path}: output.target must be one of {TARGETS}, "
                            f"got {target!r}")
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    if digest != card.sha256:
        raise ModelRejected(f"model {onnx_file}: sha256 {digest[:12]}... does not match its card "
                            f"({card.sha256[:12]}...); the file changed after the card was written")
    return card


class LearnedDynamics:
    """One model session with its recurrent state; ``step`` takes one frame."""

    def __init__(self, card: DynamicsCard) -> None:
        self.card = card
        try:
            self.session = ort.InferenceSession(str(card.onnx_file), session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
            raise ModelRejected(f"model {card.onnx_file}: onnxruntime cannot load it ({exc})") \
                from None
        d = len(card.dofs)
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        want_in = {card.input_name} | {s[0] for s in card.state}
        want_out = {card.output_name} | {s[1] for s in card.state}
        if set(ins) != want_in or outs != want_out:
            raise ModelRejected(f"model {card.name}: ONNX inputs {sorted(ins)} / outputs "
                                f"{sorted(outs)} are not the card's {sorted(want_in)} / "
                                f"{sorted(want_out)}")
        feat = ins[card.input_name].shape[-1]
        if feat != 3 * d:
            raise ModelRejected(f"model {card.name}: input has {feat} features, the card's "
                                f"{d} joints need {3 * d} (q, qd, qdd)")
        self.d = d
        self._x = np.zeros((1, 1, 3 * d), np.float32)
        self.reset()

    def reset(self) -> None:
        """Zero the recurrent state."""
        self.state = [np.zeros((s[2][0], 1, s[2][1]), np.float32) for s in self.card.state]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Frames x (T, 3d) float (q, qd, qdd) -> y (T, d); the state carries on."""
        feeds = {self.card.input_name: np.asarray(x, np.float32)[None]}
        feeds.update({s[0]: h for s, h in zip(self.card.state, self.state)})
        names = [self.card.output_name] + [s[1] for s in self.card.state]
        out = self.session.run(names, feeds)
        self.state = out[1:]
        return out[0][0]

    def step(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        """One frame of the model's joints (d,) each -> y (d,) N m."""
        d = self.d
        self._x[0, 0, :d], self._x[0, 0, d:2 * d], self._x[0, 0, 2 * d:] = q, qd, qdd
        return self.run(self._x[0])[0]
