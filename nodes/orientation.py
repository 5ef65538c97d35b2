"""Orientation: the root segment's orientation (inclination, heading drifting) from its IMU with VQF."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import vqf

from pipeline.estimation.ball_joint import x_heading
from pipeline.estimation.vqf_tuning import ROOT_BODY_WORN
from pipeline.kinematics.quaternion import np_qmul
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, ROOT, ROOT_DTYPE

_VQF_PARAMS = frozenset(vqf.VQF(0.01).params)  # tauAcc, restThGyr, biasSigmaInit, ...


def root_info(stream: str, rate_hz: float, imu: str, **meta: object) -> StreamInfo:
    """Stream info of ``root.orientation``: t_host int64 ns, q (4,) w,x,y,z root body to earth."""
    return StreamInfo.for_array(stream, ROOT, ROOT_DTYPE, rate_hz=rate_hz, source=imu,
                                channels=ROOT_DTYPE.names, units=("ns", "1"),
                                meta=dict(meta, quaternion="wxyz", frame="earth z-up",
                                          heading="arbitrary (6D, no magnetometer)"))


class Orientation(Node):
    """Estimate the root segment's orientation from its IMU in ``imu.frame`` with VQF (6D).

    Runs ``vqf.VQF`` (Laidig and Seel 2023) sample by sample (``updateBatch`` per
    message, state kept between messages), so block sizes do not change the
    result. 6D fusion of gyr and acc gives inclination; heading is relative to
    the start and drifts slowly. The quaternion maps root-sensor coordinates to
    an earth frame with z up; it is the root *body* orientation when the sensor
    is aligned with the body (use the filter node's ``remap`` otherwise).

    9D (magnetometer) fusion is not offered: ``imu.frame`` carries no magnetic
    field, and indoor fields are unusable anyway (DESIGN.md); ``mode: 9d`` is
    refused with that reason.

    Frames where the root IMU is MISSING or INVALID (NaN) keep the filter going
    on the last valid angular rate without an accelerometer correction, so the
    output stays continuous; the flags of the input tell which frames those were.
    SATURATED frames (acc at the sensor's range) carry values and are used as they are.

    Ports:
        frame: imu.frame; acc m/s^2, gyr rad/s, root IMU in the root body frame.
        root.orientation (out): t_host int64 ns (of the input frame), q w,x,y,z.
    """

    inputs = {"frame": Input(accepts=(FRAME,))}
    outputs = (ROOT,)

    @dataclass(frozen=True)
    class Params:
        imu: str = ""  # root IMU name; "" = the first IMU of the frame
        mode: Literal["6d", "9d"] = "6d"  # 6d: acc + gyr (9d is refused: frames carry no mag)
        tau_acc_s: float = ROOT_BODY_WORN.tauAcc  # s, VQF accelerometer time constant (tauAcc)
        rest_bias: bool = True  # VQF rest bias estimation
        motion_bias: bool = True  # VQF motion bias estimation
        # other VQF params by VQF's name, over the root's body-worn tuning
        # (pipeline/estimation/vqf_tuning.py ROOT_BODY_WORN)
        vqf: dict[str, Any] = field(default_factory=dict)

        def __post_init__(self) -> None:
            if self.mode == "9d":
                raise ValueError("mode '9d' needs a magnetometer, but imu.frame carries none "
                                 "(and indoor fields are unusable); use mode: 6d")
            if self.tau_acc_s <= 0:
                raise ValueError(f"tau_acc_s must be > 0, got {self.tau_acc_s}")
            unknown = sorted(set(self.vqf) - _VQF_PARAMS)
            if unknown:
                raise ValueError(f"vqf: unknown VQF parameters {unknown}; known: "
                                 f"{sorted(_VQF_PARAMS)}")

    def setup(self) -> None:
        self._in_info: StreamInfo | None = None
        self._filter: vqf.VQF | None = None
        self._index = 0
        self._last_gyr = np.zeros(3)
        self.stats.extra["bridged_frames"] = 0
        self._heading: np.ndarray | None = None  # earth-z rotation applied by heading_reset
        self._last_q: np.ndarray | None = None

    def on_command(self, command: str, args: dict) -> dict:
        """``heading_reset``: from now on the root's current heading reads 0 (its x axis,
        projected on the horizontal plane, points along earth x); inclination is unchanged."""
        if command != "heading_reset":
            return super().on_command(command, args)
        if self._last_q is None:
            return {"ok": False, "error": "no orientation yet: wait for frames, then reset"}
        yaw = x_heading(np.asarray(self._last_q, dtype=np.float64).reshape(-1, 4)[-1])
        self._heading = np.array([math.cos(-yaw / 2), 0.0, 0.0, math.sin(-yaw / 2)])
        self.log.info("heading reset: %.1f deg removed", math.degrees(yaw))
        return {"ok": True, "removed_deg": round(math.degrees(yaw), 2)}

    def _configure(self, info: StreamInfo) -> None:
        imus = list(info.meta.get("imus", []))
        name = self.params.imu or (imus[0] if imus else "")
        if name not in imus:
            raise ConfigError(f"node '{self.id}': root IMU '{name}' is not in the input frames "
                              f"of {info.stream} (IMUs {imus}); set params.imu", key="imu")
        if info.rate_hz <= 0:
            raise ConfigError(f"node '{self.id}': input {info.stream} has no rate_hz; VQF needs "
                              "a fixed sample rate (feed it from sync)")
        p = self.params
        kwargs = dict(ROOT_BODY_WORN.kwargs(), **p.vqf)
        kwargs.update(tauAcc=p.tau_acc_s, restBiasEstEnabled=p.rest_bias,
                      motionBiasEstEnabled=p.motion_bias)
        self._filter = vqf.VQF(1.0 / info.rate_hz, **kwargs)
        self._index = imus.index(name)
        self._last_gyr = np.zeros(3)
        self.declare(ROOT, root_info(f"{self.id}/{ROOT}", info.rate_hz, name, vqf=kwargs))
        if self._in_info is not None:
            self.log.info("input stream changed: VQF restarts")
        self._in_info = info

    def on_block(self, port: str, block: Block) -> None:
        if block.n == 0:
            return
        if block.info is not self._in_info and block.info != self._in_info:
            self._configure(block.info)
        if block.n == 1 and self._one_frame(block):
            return
        gyr = np.ascontiguousarray(block.data["gyr"][:, self._index], dtype=np.float64)
        acc = np.ascontiguousarray(block.data["acc"][:, self._index], dtype=np.float64)
        bad = ~(np.isfinite(gyr).all(axis=1) & np.isfinite(acc).all(axis=1))
        if bad.any():
            gyr, acc = self._bridge(gyr, acc, bad)
        if len(gyr):
            self._last_gyr = gyr[-1].copy()
        q = self._filter.updateBatch(gyr, acc)["quat6D"]
        self.stats.extra["bridged_frames"] += int(bad.sum())
        self._emit_root(block, q)

    def _one_frame(self, block: Block) -> bool:
        """A one-frame block with finite values, as VQF's single-sample update (the same
        numbers as ``updateBatch``, without its per-call arrays); False if it has NaN."""
        gyr = block.data["gyr"][0, self._index].astype(np.float64)
        acc = block.data["acc"][0, self._index].astype(np.float64)
        if not (math.isfinite(gyr.sum()) and math.isfinite(acc.sum())):
            return False
        self._last_gyr = gyr
        self._filter.update(gyr, acc)
        self._emit_root(block, self._filter.getQuat6D())
        return True

    def _emit_root(self, block: Block, q: np.ndarray) -> None:
        """Publish root.orientation: ``q`` (n, 4) w,x,y,z root to earth at the block's t_host."""
        out = np.empty(block.n, ROOT_DTYPE)
        out["t_host"] = block.data["t_host"]
        out["q"] = q if self._heading is None else np_qmul(self._heading, q)
        self._last_q = q  # VQF hands out a new array each call: kept, not copied
        self.stats.extra["rest"] = bool(self._filter.getRestDetected())
        self.emit(ROOT, out, t_host=block.t_host, gap=block.gap)

    def _bridge(self, gyr: np.ndarray, acc: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
        """Hold the last valid gyr and skip the acc correction (acc = 0) on NaN frames."""
        idx = np.where(~bad, np.arange(len(gyr)), -1)
        last = np.maximum.accumulate(idx)
        held = np.where((last >= 0)[:, None], gyr[np.maximum(last, 0)], self._last_gyr)
        acc = np.where(bad[:, None], 0.0, acc)
        return np.ascontiguousarray(held), np.ascontiguousarray(acc)
