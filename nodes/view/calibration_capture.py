"""IMU samples kept while the window's calibration procedure runs (filled from the bus thread).

The viewer's plots keep only their last seconds; the procedure needs all of its ~30 s of
``acc`` (m/s^2) and ``gyr`` (rad/s) in the sensor frames, per IMU, with ``t_host`` (ns). The
node's bus thread appends what arrives on the viewer's ``imu`` input while the capture is
armed; the GUI thread takes it at the end. Samples already rotated into segment frames (an
``imu.frame`` after a filter with a calibration or remap) cannot be calibrated again and
are refused with the reason.
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLE_DTYPE = np.dtype([("t_host", "<i8"), ("acc", "<f8", (3,)), ("gyr", "<f8", (3,))])
MAX_SAMPLES = 200_000  # per IMU: 33 min at 100 Hz; a procedure lasts about 30 s


class CalibrationCapture:
    """Per-IMU samples while armed; thread-safe (bus thread adds, GUI thread starts/takes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed = False
        self._parts: dict[str, list[np.ndarray]] = {}
        self._counts: dict[str, int] = {}
        self.in_segment_frames: set[str] = set()  # IMUs that arrived already calibrated

    def start(self) -> None:
        """Forget earlier samples and keep what arrives from now on."""
        with self._lock:
            self._parts, self._counts = {}, {}
            self.in_segment_frames = set()
            self.armed = True

    def add(self, name: str, t_host: np.ndarray, acc: np.ndarray, gyr: np.ndarray,
            segment_frame: bool = False) -> None:
        """Keep samples of IMU ``name`` (t_host (n,) ns, acc/gyr (n, 3)) if armed."""
        if not self.armed:
            return
        rows = np.empty(len(t_host), SAMPLE_DTYPE)
        rows["t_host"], rows["acc"], rows["gyr"] = t_host, acc, gyr
        with self._lock:
            if not self.armed or self._counts.get(name, 0) >= MAX_SAMPLES:
                return
            if segment_frame:
                self.in_segment_frames.add(name)
            self._parts.setdefault(name, []).append(rows)
            self._counts[name] = self._counts.get(name, 0) + len(rows)

    def counts(self) -> dict[str, int]:
        """Samples kept so far per IMU."""
        with self._lock:
            return dict(self._counts)

    def stop(self) -> dict[str, np.ndarray]:
        """Disarm and return the samples per IMU (SAMPLE_DTYPE arrays, arrival order)."""
        with self._lock:
            self.armed = False
            parts, self._parts, self._counts = self._parts, {}, {}
        return {name: np.concatenate(p) for name, p in parts.items()}
