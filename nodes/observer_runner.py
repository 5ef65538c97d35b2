"""Recurrent state of one observer model over a frame stream: steps, holds, resets.

Rules (the same in step and block mode, so both give the same numbers):

- A frame is *valid* when no sensor is flagged MISSING or INVALID
  (``pipeline.streams.FrameFlag``) and all its acc/gyr values are finite. Only
  valid frames are fed to the model; the values of other frames are never used.
- For a frame that is not valid the hidden state is held and the last estimate
  is repeated (``held``); the node publishes such blocks with the gap flag.
  Before the first valid frame the held estimate is identity / angle 0.
- Before feeding a valid frame, if more than ``reset_gap_s`` passed (``t_host``)
  since the last fed frame, the hidden state is reset to zeros: a long drop-out
  (missing frames, a lost message, a paused sensor) starts the model afresh.
- Block mode runs each run of consecutive valid frames without a reset in one
  ``session.run``; step mode runs one frame per call.
"""

from __future__ import annotations

import numpy as np

from nodes.observer_fit import ModelFit
from nodes.observer_session import ObserverSession
from pipeline.streams import FrameFlag

BAD_FLAGS = int(FrameFlag.MISSING | FrameFlag.INVALID)


def valid_frames(frames: np.ndarray) -> np.ndarray:
    """(n,) bool: frames with no MISSING/INVALID sensor and finite acc (m/s^2) and gyr (rad/s)."""
    ok = ((frames["flags"] & BAD_FLAGS) == 0).all(axis=1)
    ok &= np.isfinite(frames["acc"]).all(axis=(1, 2)) & np.isfinite(frames["gyr"]).all(axis=(1, 2))
    return ok


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

    def reset(self) -> None:
        """Zero the hidden state (the next valid frame starts the model afresh)."""
        self.state = self.session.zero_state()
        self.t_last = None
        self.resets += 1

    def process(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Feed ``frames`` (n,) imu.frame samples, fill ``out`` (n,) chain.state if given.

        Returns the ``held`` mask (n,) bool: True where the frame was not valid and the
        previous estimate was repeated. ``out["t_host"]`` is left to the caller.
        """
        n = len(frames)
        valid = valid_frames(frames)
        t = frames["t_host"]
        x = self.fit.features(frames)
        q = out["q_rel"] if out is not None else np.empty((n, self.fit.n_bodies, 4), np.float32)
        ang = out["angle"] if out is not None else np.empty((n, self.fit.n_hinge), np.float32)
        q[:] = (1.0, 0.0, 0.0, 0.0)  # bodies the model does not estimate: identity
        ang[:] = 0.0
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
            y, self.state = self.session.run(x[i:j], self.state)
            self.t_last = int(t[j - 1])
            self.fit.decode(y, q[i:j], ang[i:j])
            self._last_q, self._last_angle = q[j - 1].copy(), ang[j - 1].copy()
            i = j
        return ~valid

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
