"""Recurrent state of one observer model over a frame stream: steps, holds, resets.

Rules (the same in step and block mode, so both give the same numbers):

- A frame is *valid* when no sensor is flagged MISSING or INVALID
  (``pipeline.runtime.streams.FrameFlag``) and all its acc/gyr values are finite. Only
  valid frames are fed to the model; the values of other frames are never used.
- For a frame that is not valid the hidden state is held and the last estimate
  is repeated (``held``); the node publishes such blocks with the gap flag.
  Before the first valid frame the held estimate is identity / angle 0.
- Before feeding a valid frame, if more than ``reset_gap_s`` passed (``t_host``)
  since the last fed frame, the hidden state is reset to zeros: a long drop-out
  (missing frames, a lost message, a paused sensor) starts the model afresh.
- Block mode runs each run of consecutive valid frames without a reset in one
  ``session.run``; step mode runs one frame per call. One-frame runs go through
  ``session.step_binding()`` (the compiled GRU kernel, checked against onnxruntime
  to 1e-5 at load, or preallocated bound ONNX buffers): same numbers, less per-call work.
"""

from __future__ import annotations

import math

import numpy as np

from nodes.observer.fit import ModelFit
from nodes.observer.gru_step import CompiledStep
from nodes.observer.session import ObserverSession, StepBinding
from pipeline.runtime.streams import UNUSABLE, frames_usable

BAD_FLAGS = np.uint8(UNUSABLE)
_GOOD_FLAGS = bytes(v for v in range(256) if not v & int(BAD_FLAGS))  # of a usable sensor


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only."""
    a.flags.writeable = False
    return a


_HELD = (_read_only(np.zeros(1, bool)), _read_only(np.ones(1, bool)))  # one-frame held masks


def valid_frames(frames: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool: frames with no MISSING/INVALID sensor and finite acc (m/s^2) and gyr (rad/s).

    ``x``: the frames' model input (n, n_imu*6), checked for finiteness instead of ``frames``
    (give it only when it holds every sensor's acc and gyr).
    """
    if x is None:
        return frames_usable(frames)
    return ~np.bitwise_and(frames["flags"], BAD_FLAGS).any(axis=1) & np.isfinite(x).all(axis=1)


class ObserverRunner:
    """One model's hidden state over a stream of ``imu.frame`` samples."""

    def __init__(self, session: ObserverSession, fit: ModelFit, reset_gap_s: float,
                 block_mode: bool) -> None:
        self.session, self.fit = session, fit
        self.reset_gap_ns = int(reset_gap_s * 1e9)
        self.block_mode = block_mode
        self.state = session.zero_state()
        self.t_last: int | None = None  # t_host (ns) of the last frame fed to the model
        self.resets = 0
        self._last_q = np.zeros((fit.n_bodies, 4), dtype=np.float32)
        self._last_q[:, 0] = 1.0
        self._last_angle = np.zeros(fit.n_hinge, dtype=np.float32)
        self._step: CompiledStep | StepBinding | None = None  # one-frame runs, made on use

    def reset(self) -> None:
        """Zero the hidden state (the next valid frame starts the model afresh)."""
        self.state = self.session.zero_state()
        self.t_last = None
        self.resets += 1

    def process(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Feed ``frames`` (n,) imu.frame samples, fill ``out`` (n,) chain.state if given.

        Returns the ``held`` mask (n,) bool: True where the frame was not valid and the
        previous estimate was repeated (read-only for one frame). ``out["t_host"]`` is left
        to the caller.
        """
        n, fit = len(frames), self.fit
        q = out["q_rel"] if out is not None else np.empty((n, fit.n_bodies, 4), np.float32)
        ang = out["angle"] if out is not None else np.empty((n, fit.n_hinge), np.float32)
        if n == 1:
            return _HELD[self._process_one(frames, q, ang)]
        x = fit.features(frames)
        valid = valid_frames(frames, x if self._x_has_all(frames) else None)
        t = frames["t_host"]
        fit.fill_unestimated(q, ang)  # bodies the model does not estimate: identity, angle 0
        i = 0
        while i < n:
            if not valid[i]:
                q[i], ang[i] = self._last_q, self._last_angle
                i += 1
                continue
            if self.t_last is not None and t[i] - self.t_last > self.reset_gap_ns:
                self.reset()
            j = i + 1
            if self.block_mode:
                while j < n and valid[j] and t[j] - t[j - 1] <= self.reset_gap_ns:
                    j += 1
            if j - i > 1:
                y, self.state = self.session.run(x[i:j], self.state)
            else:
                y = self._run_one(x[i])
            self.t_last = int(t[j - 1])
            fit.decode(y, q[i:j], ang[i:j])
            self._last_q, self._last_angle = q[j - 1].copy(), ang[j - 1].copy()
            i = j
        return ~valid

    def _process_one(self, frames: np.ndarray, q: np.ndarray, ang: np.ndarray) -> bool:
        """:meth:`process` for one frame (step mode); features go straight into the bound input."""
        step = self._step or self._bind()
        x = self.fit.features(frames, step.x)
        if not self._valid_one(frames, x):
            q[0], ang[0] = self._last_q, self._last_angle
            return True
        t = int(frames["t_host"][0])
        if self.t_last is not None and t - self.t_last > self.reset_gap_ns:
            self.reset()
        y, self.state = step.run(self.state)
        self.t_last = t
        self.fit.fill_unestimated(q, ang)
        self.fit.decode(y, q, ang)
        self._last_q, self._last_angle = q[0].copy(), ang[0].copy()
        return False

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        """Model output (1, n_outputs) for one frame's features ``x`` (n_features,)."""
        step = self._step or self._bind()
        step.x[0] = x
        y, self.state = step.run(self.state)
        return y

    def _bind(self) -> CompiledStep | StepBinding:
        """The one-frame step buffers, made now."""
        self._step = self.session.step_binding()
        return self._step

    def _x_has_all(self, frames: np.ndarray) -> bool:
        """True when the model input holds every sensor of ``frames`` (check finiteness on it)."""
        return self.fit.all_sensors and len(self.fit.perm) == frames.dtype["flags"].shape[0]

    def _valid_one(self, frames: np.ndarray, x: np.ndarray) -> bool:
        """:func:`valid_frames` for one frame (1,) with its model input ``x`` (1, n_features)."""
        if frames.dtype["flags"].base != np.uint8 or not self._x_has_all(frames):
            return bool(valid_frames(frames)[0])
        if frames["flags"].tobytes().translate(None, _GOOD_FLAGS):  # a MISSING/INVALID sensor
            return False
        # a finite sum means every value is finite (one call); else the exact test (an overflow)
        return math.isfinite(np.add.reduce(x, axis=None)) or bool(np.isfinite(x).all())

    def advance(self, frames: np.ndarray) -> None:
        """Update the hidden state on ``frames`` without keeping outputs (warm-up, catch-up)."""
        if len(frames):
            self.process(frames)


class FrameRing:
    """The most recent ``capacity`` input frames, numbered by arrival (for warm-up on a swap)."""

    def __init__(self, dtype: np.dtype, capacity: int) -> None:
        self.buf = np.zeros(capacity, dtype=dtype)
        self.capacity = capacity
        self.count = 0  # frames ever pushed; frame k sits at buf[k % capacity]

    def push(self, frames: np.ndarray) -> None:
        """Append (n,) frames, overwriting the oldest."""
        n = len(frames)
        if n == 1:  # element assignment: much cheaper than a one-element slice of records
            self.buf[self.count % self.capacity] = frames[0]
            self.count += 1
            return
        if n >= self.capacity:
            frames = frames[-self.capacity:]
            self.count += n - self.capacity
            n = self.capacity
        start = self.count % self.capacity
        first = min(n, self.capacity - start)
        self.buf[start:start + first] = frames[:first]
        self.buf[:n - first] = frames[first:]
        self.count += n

    @property
    def oldest(self) -> int:
        """Index of the oldest frame still held."""
        return max(0, self.count - self.capacity)

    def since(self, index: int) -> tuple[np.ndarray, int]:
        """Copy of frames ``index`` .. newest (clipped to what is held), and the first index kept."""
        start = max(index, self.oldest)
        idx = np.arange(start, self.count) % self.capacity
        return self.buf[idx], start
