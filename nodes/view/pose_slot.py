"""Newest-wins pose slot shared between the bus thread (writer) and the GUI thread (reader)."""

from __future__ import annotations

import threading

import numpy as np


class PoseSlot:
    """Holds the newest chain pose under a lock; older poses are overwritten, never queued.

    ``pos``: (n_bodies, 3) float32, m, earth frame (z up); ``quat``: (n_bodies, 4) float32,
    w,x,y,z, body to earth; ``t_host``: int64 ns of the sample.
    """

    def __init__(self, n_bodies: int) -> None:
        self._lock = threading.Lock()
        self._pos = np.zeros((n_bodies, 3), np.float32)
        self._quat = np.zeros((n_bodies, 4), np.float32)
        self._quat[:, 0] = 1.0
        self._t_host = 0
        self._version = 0
        self.n_bodies = n_bodies

    def put(self, pos: np.ndarray, quat: np.ndarray, t_host: int) -> None:
        """Store one pose (copied): pos (n_bodies, 3) m, quat (n_bodies, 4) wxyz, t_host ns."""
        with self._lock:
            self._pos[...] = pos
            self._quat[...] = quat
            self._t_host = int(t_host)
            self._version += 1

    @property
    def version(self) -> int:
        """Number of poses stored so far (changes whenever a new pose arrived)."""
        return self._version

    def get(self) -> tuple[int, np.ndarray, np.ndarray, int]:
        """Copy of the newest pose: (version, pos (n, 3) m, quat (n, 4) wxyz, t_host ns)."""
        with self._lock:
            return self._version, self._pos.copy(), self._quat.copy(), self._t_host
