"""Filter: gyro bias at rest, sensor-to-segment axis remapping and Butterworth low-pass on frames."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nodes.filter.gyro_bias import RestBiasEstimator
from nodes.filter.lowpass import StreamingLowpass
from pipeline.calibration.calibration_file import load_rotations
from pipeline.kinematics.quaternion import qto_matrix
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, FrameFlag, frame_dtype

_AXES = {"x": 0, "y": 1, "z": 2}
_AT_REST = np.uint8(FrameFlag.AT_REST)
STATS_PERIOD_NS = 250_000_000  # refresh rest and bias figures in status this often


def rotation_from_spec(spec: Any, where: str = "remap") -> np.ndarray:
    """3x3 rotation R (float64) with ``v_segment = R @ v_sensor`` from a remap spec.

    Accepted specs: an axis string ``"x,-z,y"`` (segment x = sensor x, segment y =
    -sensor z, segment z = sensor y), a quaternion ``[w, x, y, z]`` (sensor to
    segment), or a 3x3 matrix (rows = segment axes in sensor coordinates).
    Raises ConfigError if the result is not a proper rotation.
    """
    if isinstance(spec, str):
        parts = [p.strip().lower() for p in spec.split(",")]
        if len(parts) != 3 or any(p.lstrip("+-") not in _AXES for p in parts):
            raise ConfigError(f"{where}: axis string {spec!r} must name three sensor axes, "
                              "e.g. 'x,-z,y'", key="remap")
        r = np.zeros((3, 3))
        for row, p in enumerate(parts):
            r[row, _AXES[p.lstrip("+-")]] = -1.0 if p.startswith("-") else 1.0
    else:
        arr = np.asarray(spec, dtype=np.float64)
        if arr.shape == (4,):
            norm = np.linalg.norm(arr)
            if abs(norm - 1.0) > 1e-3:
                raise ConfigError(f"{where}: quaternion {spec} has norm {norm:.4f}, need a unit "
                                  "quaternion w, x, y, z", key="remap")
            r = np.asarray(qto_matrix(arr / norm), dtype=np.float64)
        elif arr.shape == (3, 3):
            r = arr
        else:
            raise ConfigError(f"{where}: expected an axis string like 'x,-z,y', a quaternion "
                              f"[w, x, y, z] or a 3x3 matrix, got {spec!r}", key="remap")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise ConfigError(f"{where}: {spec!r} is not a proper rotation (orthonormal, det +1); "
                          "a mirrored axis set (det -1) would flip handedness", key="remap")
    return r


class Filter(Node):
    """Gyro bias removal at rest, axis remapping to segment frames and low-pass on ``imu.frame``.

    Order: rest detection and bias (sensor frame) -> subtract bias -> remap or calibration
    (sensor to segment frame, ``calibration``: a file of ``imuflow calibrate``; a poor one is
    refused) -> Butterworth low-pass (acc and gyr). A frame gets FrameFlag.AT_REST when the
    ``rest_window_s`` ending at it is still; a sample enters the bias only once every window
    holding it is still, i.e. ``rest_window_s`` later (motion onset never does; see
    :class:`~nodes.filter.gyro_bias.RestBiasEstimator`). NaN samples (MISSING/INVALID) stay
    NaN and do not disturb the filter states; SATURATED samples are used as they are.
    Output does not depend on block sizes.

    Ports:
        frame: imu.frame, acc m/s^2, gyr rad/s, sensor frame.
        imu.frame (out): same layout; gyr bias-corrected; segment frame for remapped IMUs.
    """

    inputs = {"frame": Input(accepts=(FRAME,))}
    outputs = (FRAME,)

    @dataclass(frozen=True)
    class Params:
        remap: dict[str, Any] = field(default_factory=dict)  # imu -> 'x,-z,y' | wxyz | 3x3
        calibration: str = ""  # calibration file (`imuflow calibrate`): sensor -> segment
        allow_poor_calibration: bool = False  # apply a calibration marked poor anyway
        bias: bool = True  # estimate and subtract the gyro bias at rest
        rest_window_s: float = 1.0  # s, rest-detection window (and the bias update's delay)
        rest_gyr_std: float = 0.03  # rad/s, max std of each gyro axis at rest
        rest_acc_std: float = 0.3  # m/s^2, max std of each acc axis at rest
        # rad/s, max |mean| of each gyro axis at rest: a steadier, faster turn is not bias
        # (MEMS zero-rate offsets are a few deg/s; DESIGN's realistic sensors +-3 deg/s)
        bias_max: float = 0.1
        bias_tau_s: float = 2.0  # s, time constant of the bias average while resting
        cutoff_hz: float = 0.0  # Hz, Butterworth low-pass cutoff; 0 = off
        order: int = 2  # low-pass order

        def __post_init__(self) -> None:
            if self.rest_window_s <= 0 or self.bias_tau_s <= 0 or self.cutoff_hz < 0 or (
                    self.order < 1) or not self.bias_max > 0:
                raise ValueError("rest_window_s, bias_tau_s and bias_max must be > 0, "
                                 f"cutoff_hz >= 0, order >= 1; got {self}")

    def setup(self) -> None:
        self._rot = {name: rotation_from_spec(spec, f"node '{self.id}': remap.{name}")
                     for name, spec in self.params.remap.items()}
        if self.params.calibration:
            path = self.context.resolve(self.params.calibration)
            calibrated = load_rotations(path, allow_poor=self.params.allow_poor_calibration)
            both = sorted(set(calibrated) & set(self._rot))
            if both:
                raise ConfigError(f"node '{self.id}': IMU(s) {both} have both a remap and a "
                                  f"calibration ({path}); keep one", key="remap")
            self._rot.update(calibrated)
            self.log.info("calibration %s applied to %s", path, sorted(calibrated))
        if self.params.bias:  # load (or compile) the rest-detection kernel now, not on a frame
            for n, writeable in ((1, False), (2, False), (1, True), (2, True)):
                # as the fields of frame arrays (float32): one frame is contiguous, more are
                # strided; read-only from the bus, writeable from a direct producer
                frame = np.zeros(n, frame_dtype(1))
                frame.flags.writeable = writeable
                RestBiasEstimator(1, window=2, gyr_std=1.0, acc_std=1.0, tau=1.0).update(
                    frame["acc"], frame["gyr"])
        if self.params.cutoff_hz > 0:  # and the low-pass recursion (the 2nd call steps)
            warm = StreamingLowpass(1, cutoff_hz=1.0, rate_hz=10.0, order=1)
            warm(np.zeros((1, 1)))
            warm(np.zeros((1, 1)))
        self._in_info: StreamInfo | None = None
        self._last_flags: np.ndarray | None = None  # stays None until the first frame

    def _configure(self, info: StreamInfo) -> None:
        """Build per-stream state for the IMUs and rate of ``info``."""
        p = self.params
        imus = list(info.meta.get("imus", []))
        unknown = sorted(set(self._rot) - set(imus))
        if unknown:
            raise ConfigError(f"node '{self.id}': remap names {unknown}, but the input frames "
                              f"carry IMUs {imus}", key="remap")
        rate = info.rate_hz
        if rate <= 0:
            raise ConfigError(f"node '{self.id}': input {info.stream} has no rate_hz; the "
                              "filter needs a fixed rate (feed it from sync)")
        n = len(imus)
        self._r = np.stack([self._rot.get(m, np.eye(3)) for m in imus]) if n else np.zeros(
            (0, 3, 3))
        self._bias = RestBiasEstimator(n, window=max(2, round(p.rest_window_s * rate)),
                                       gyr_std=p.rest_gyr_std, acc_std=p.rest_acc_std,
                                       tau=p.bias_tau_s * rate,
                                       bias_max=p.bias_max) if p.bias else None
        self._lowpass = StreamingLowpass(n * 6, cutoff_hz=p.cutoff_hz, rate_hz=rate,
                                         order=p.order) if p.cutoff_hz > 0 else None
        frames = ["segment" if m in self._rot else "sensor" for m in imus]
        meta = dict(info.meta, frame="segment" if self._rot else "sensor", frames=frames,
                    filter={"bias": p.bias, "cutoff_hz": p.cutoff_hz, "order": p.order})
        self._out_info = self.declare(FRAME, replace(info, stream=f"{self.id}/{FRAME}",
                                                     meta=meta))
        self._in_info = info
        self._n_imu = n
        self._last_flags: np.ndarray | None = None
        self._stats_due_ns = 0

    def on_block(self, port: str, block: Block) -> None:
        if block.n == 0:
            return
        if block.info is not self._in_info and block.info != self._in_info:
            if self._in_info is not None:
                self.log.info("input stream changed (%s): filter states restart",
                              block.info.meta.get("imus"))
            self._configure(block.info)
        src = block.data
        n, k = block.n, self._n_imu
        flags = src["flags"].copy()
        out = np.empty(n, src.dtype)
        out["t_host"] = src["t_host"]
        if not self._rot and self._lowpass is None:  # bias only: on the frame's own fields
            if self._bias is not None:
                rest, bias = self._bias.update(src["acc"], src["gyr"])
                if rest.any():
                    flags[rest] |= _AT_REST
                np.subtract(src["gyr"], bias, out=out["gyr"], casting="same_kind")
            else:
                out["gyr"] = src["gyr"]
            out["acc"] = src["acc"]  # float32 in and out: as via float64, bit for bit
        else:
            x = np.empty((n, k, 2, 3))  # per sensor acc (m/s^2) then gyr (rad/s), float64
            x[:, :, 0] = src["acc"]
            x[:, :, 1] = src["gyr"]
            if self._bias is not None:
                rest, bias = self._bias.update(src["acc"], src["gyr"])
                x[:, :, 1] -= bias
                if rest.any():
                    flags[rest] |= _AT_REST
            if self._rot:
                x[:, :, 0] = np.einsum("kij,nkj->nki", self._r, x[:, :, 0])
                x[:, :, 1] = np.einsum("kij,nkj->nki", self._r, x[:, :, 1])
            if self._lowpass is not None:
                x = self._lowpass(x.reshape(n, k * 6)).reshape(n, k, 2, 3)
            out["acc"] = x[:, :, 0]
            out["gyr"] = x[:, :, 1]
        out["flags"] = flags
        self._last_flags = flags[-1]
        now = time.monotonic_ns()
        if now >= self._stats_due_ns:  # status goes out about once a second
            self._stats_due_ns = now + STATS_PERIOD_NS
            self._update_stats()
        self.emit(FRAME, out, t_host=block.t_host, gap=block.gap)

    def _update_stats(self) -> None:
        """Rest state per sensor and the gyro bias estimate (rad/s) in ``status``."""
        if self._last_flags is None:
            return
        self.stats.extra["at_rest"] = [bool(x) for x in (self._last_flags & _AT_REST)]
        if self._bias is not None:
            self.stats.extra["gyr_bias_rad_s"] = np.round(self._bias.bias, 5).tolist()

    def on_eos(self) -> None:
        self._update_stats()
