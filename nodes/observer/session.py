"""ONNX observer session: load a model and its card safely, check the ONNX IO, run steps.

Loading never unpickles anything: the card is JSON (``pipeline.evaluation.model_card``), the
model is ONNX run by onnxruntime. A model is only loaded from inside one of the
graph's ``model_dirs`` (after resolving symlinks and ``..``), its sha256 must match
the card, and its inputs and outputs must be exactly what the card says:

- input ``card.input_name``: (batch, T, n_imu*6) float32, raw SI (m/s^2, rad/s), sensor frame;
- per ``card.state`` entry: input and output (layers, batch, hidden) float32;
- output ``card.output_name``: (batch, T, card.n_outputs) float32.

Sessions use one intra-op thread and sequential execution: one step at batch 1
is latency-bound, and the machines running the graph have few cores. One-frame
steps go through :meth:`ObserverSession.step_binding`: the compiled GRU kernel of
``nodes/observer/gru_step.py`` when the model is the project's GRU observer and the kernel
matches onnxruntime at load (``step_engine="auto"``), else :class:`StepBinding`
(ONNX IO bound once to preallocated buffers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nodes.observer.gru_step import CompiledStep, GruWeights, NotCompilable, compile_step
from pipeline.evaluation.model_card import ModelCard, card_path_for, load_card
from pipeline.runtime.errors import ModelRejected
from pipeline.runtime.model_files import check_inside, find_model, session_options

log = logging.getLogger("imuflow.observer_session")


@dataclass(frozen=True)
class LoadTimes:
    """How long loading took, ms: card read + hash, ONNX session creation, IO checks."""

    card_ms: float
    session_ms: float
    check_ms: float


class ObserverSession:
    """A checked onnxruntime session of an observer model plus its card.

    ``run(x, state)`` takes ``x`` (T, n_imu*6) float32 (card IMU order, acc m/s^2 then gyr
    rad/s per IMU, sensor frame) and the hidden state, and returns ``y`` (T, n_outputs)
    float32 and the new state; batch is 1.
    """

    def __init__(self, card: ModelCard, session: ort.InferenceSession, times: LoadTimes) -> None:
        self.card, self.session, self.times = card, session, times
        self._state_in = [s.input for s in card.state]
        self._fetch = [card.output_name] + [s.output for s in card.state]
        self.weights: GruWeights | None = None  # set when the compiled step is verified
        self.step_engine = "onnxruntime"

    def use_compiled_step(self, onnx_path: Path) -> None:
        """Step frames with the compiled GRU kernel if it matches onnxruntime on this model."""
        if len(self.card.state) != 1:
            self.step_engine = "onnxruntime (compiled step: one state tensor only)"
            return
        try:
            self.weights = compile_step(onnx_path, self.run, self.card.n_features,
                                        self.card.state[0].shape)
        except NotCompilable as exc:
            self.step_engine = f"onnxruntime (compiled step: {exc})"
            log.info("model %s: one-frame steps stay on onnxruntime: %s", self.name, exc)
            return
        self.step_engine = "compiled"

    def step_binding(self) -> CompiledStep | StepBinding:
        """Buffers and runner for one-frame steps: compiled kernel, else bound ONNX IO."""
        return CompiledStep(self.weights) if self.weights is not None else StepBinding(self)

    @property
    def name(self) -> str:
        """Model name from the card."""
        return self.card.name

    def zero_state(self) -> list[np.ndarray]:
        """Fresh hidden state: one (layers, 1, hidden) float32 zero array per state tensor."""
        return [np.zeros((s.shape[0], 1, s.shape[1]), dtype=np.float32) for s in self.card.state]

    def run(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run T steps: ``x`` (T, n_features) float32 -> ``y`` (T, n_outputs), new state."""
        feeds = {self.card.input_name: x[None]}
        for name, h in zip(self._state_in, state):
            feeds[name] = h
        out = self.session.run(self._fetch, feeds)
        return out[0][0], out[1:]


class StepBinding:
    """One-frame steps of a session through preallocated, bound buffers (no per-step allocation).

    Write the frame's features into ``x`` (1, n_features) float32, then ``run(state)``. The
    hidden state ping-pongs between two buffer sets owned here; ``y`` (1, n_outputs) float32
    is overwritten by the next run. One binding serves one thread at a time.
    """

    def __init__(self, session: ObserverSession) -> None:
        card, sess = session.card, session.session
        self._sess = sess
        self._x = np.zeros((1, 1, card.n_features), dtype=np.float32)
        self._y = np.zeros((1, 1, card.n_outputs), dtype=np.float32)
        self.x, self.y = self._x[0], self._y[0]
        self._states = (session.zero_state(), session.zero_state())
        self._bindings = tuple(self._bind(card, k) for k in (0, 1))

    def _bind(self, card: ModelCard, k: int) -> ort.IOBinding:
        """Binding that reads the state from buffer set ``k`` and writes it to the other."""
        b = self._sess.io_binding()
        _bind_array(b.bind_input, card.input_name, self._x)
        _bind_array(b.bind_output, card.output_name, self._y)
        for s, h_in, h_out in zip(card.state, self._states[k], self._states[1 - k]):
            _bind_array(b.bind_input, s.input, h_in)
            _bind_array(b.bind_output, s.output, h_out)
        return b

    def run(self, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step on ``x`` from ``state``: ``y`` (1, n_outputs) view and the new state."""
        states = self._states
        k = 0 if state is states[0] else 1 if state is states[1] else -1
        if k < 0:  # a state from elsewhere (fresh, or from a block run): copy it in
            for dst, src in zip(states[0], state):
                np.copyto(dst, src)
            k = 0
        self._sess.run_with_iobinding(self._bindings[k])
        return self.y, states[1 - k]


def _bind_array(bind: Callable, name: str, arr: np.ndarray) -> None:
    """Bind the C-contiguous float32 ``arr`` as the ONNX input or output ``name`` (no copy)."""
    bind(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)


STEP_ENGINES = ("auto", "onnxruntime")


def load_session(path: str | Path, model_dirs: tuple[Path, ...],
                 step_engine: str = "auto") -> ObserverSession:
    """Load the model ``path`` (.onnx or card) from inside ``model_dirs``; check card and IO.

    ``step_engine``: ``auto`` steps single frames with the compiled GRU kernel when it
    applies (``nodes/observer/gru_step.py``), ``onnxruntime`` always with onnxruntime.

    Raises ModelRejected with the reason when the file is outside the model folders,
    the card is missing or malformed, the hash differs, the file is not a valid ONNX
    model, or its inputs and outputs differ from the card.
    """
    if step_engine not in STEP_ENGINES:
        raise ValueError(f"step_engine must be one of {STEP_ENGINES}, got {step_engine!r}")
    t0 = time.perf_counter()
    found = find_model(path, model_dirs)
    check_inside(card_path_for(found), model_dirs, "model card")
    card = load_card(found, verify_hash=True)
    onnx_path = check_inside(card.onnx_path, model_dirs, "ONNX file")
    t1 = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(onnx_path), sess_options=session_options(),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (Fail, InvalidProtobuf, ...)
        raise ModelRejected(f"{onnx_path}: not a valid ONNX model ({type(exc).__name__}: "
                            f"{str(exc).strip()[:300]})") from None
    t2 = time.perf_counter()
    _check_io(card, sess, onnx_path)
    session = ObserverSession(card, sess, LoadTimes(
        (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3))
    _check_run(session, onnx_path)
    if step_engine == "auto":
        session.use_compiled_step(onnx_path)
    log.info("loaded model %s (%s, sha256 %s..., one-frame steps: %s)", card.name, onnx_path,
             card.sha256[:12], session.step_engine)
    return session


def _dims_fit(shape: list, want: list) -> bool:
    """True when an ONNX shape (ints or symbolic names) can hold ``want`` (None = any)."""
    if len(shape) != len(want):
        return False
    return all(w is None or not isinstance(d, int) or d == w for d, w in zip(shape, want))


def _check_io(card: ModelCard, sess: ort.InferenceSession, onnx_path: Path) -> None:
    ins = {i.name: i for i in sess.get_inputs()}
    outs = {o.name: o for o in sess.get_outputs()}
    want_in = {card.input_name: [None, None, card.n_features]}
    want_out = {card.output_name: [None, None, card.n_outputs]}
    for s in card.state:
        want_in[s.input] = [s.shape[0], None, s.shape[1]]
        want_out[s.output] = [s.shape[0], None, s.shape[1]]
    if set(ins) != set(want_in):
        raise ModelRejected(f"{onnx_path}: ONNX inputs are {sorted(ins)}, the card "
                            f"{card.path} says {sorted(want_in)}")
    missing = sorted(set(want_out) - set(outs))
    if missing:
        raise ModelRejected(f"{onnx_path}: ONNX outputs {sorted(outs)} lack {missing} named by "
                            f"the card {card.path}")
    for kind, decl, want in (("input", ins, want_in), ("output", outs, want_out)):
        for name, shape in want.items():
            arg = decl[name]
            if arg.type != "tensor(float)":
                raise ModelRejected(f"{onnx_path}: {kind} '{name}' is {arg.type}, must be "
                                    "tensor(float) (float32)")
            if not _dims_fit(list(arg.shape), shape):
                pretty = ["any" if w is None else w for w in shape]
                raise ModelRejected(f"{onnx_path}: {kind} '{name}' has shape {arg.shape}, the "
                                    f"card {card.path.name if card.path else ''} implies {pretty} "
                                    "(batch, T, features) or (layers, batch, hidden)")


def _check_run(session: ObserverSession, onnx_path: Path) -> None:
    """Run 2 zero steps and check the output shapes (catches dynamic-shape mismatches)."""
    card = session.card
    x = np.zeros((2, card.n_features), dtype=np.float32)
    try:
        y, state = session.run(x, session.zero_state())
    except Exception as exc:  # noqa: BLE001 - onnxruntime errors carry the node that failed
        raise ModelRejected(f"{onnx_path}: a test run with zero input failed "
                            f"({type(exc).__name__}: {str(exc).strip()[:300]})") from None
    if y.shape != (2, card.n_outputs):
        raise ModelRejected(f"{onnx_path}: output '{card.output_name}' has shape "
                            f"(1, {', '.join(map(str, y.shape))}) for 2 steps, expected "
                            f"(1, 2, {card.n_outputs})")
    for s, h in zip(card.state, state):
        if h.shape != (s.shape[0], 1, s.shape[1]):
            raise ModelRejected(f"{onnx_path}: state output '{s.output}' has shape {h.shape}, "
                                f"expected ({s.shape[0]}, 1, {s.shape[1]})")
