"""Test helpers for the observer: tiny ONNX GRU models with cards, a frame source and a state sink.

``build_model`` exports a small torch GRU with exactly the model-card IO
(``imu`` (batch, T, n_imu*6), state ``h0``/``hn`` (layers, batch, hidden), ``y``
(batch, T, n_out)) and writes its card with ``pipeline.evaluation.model_card.write_card``.
``FrameSource`` and ``StateSink`` are graph nodes usable as
``kind: tests.observer_models.FrameSource`` / ``tests.observer_models.StateSink``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.estimation.output_encoding import output_width
from pipeline.evaluation.model_card import ModelCard, OutputBody, StateTensor, sha256_of, write_card
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import ImuNoise, simulate
from pipeline.runtime.message import Block
from pipeline.runtime.node import Node, Source
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, STATE, FrameFlag, frame_dtype, frame_info

REPO = Path(__file__).resolve().parents[1]
CHAINS = REPO / "configs" / "chains"
KNEE_OUTPUTS = (("thigh", "quat"), ("shank", "sincos"))
ARM3_OUTPUTS = (("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos"))


def build_model(folder: Path, name: str, *, chain: str = "knee", imus: tuple[str, ...] | None = None,
                outputs: tuple[tuple[str, str], ...] | None = None, rate_hz: float = 100.0,
                hidden: int = 16, layers: int = 2, seed: int = 0) -> Path:
    """Export a random tiny GRU observer ``folder/name.onnx`` plus its card; return the .onnx path."""
    import torch

    ch = load_chain(CHAINS / f"{chain}.yaml")
    imus = tuple(imus or ch.imu_names)
    outputs = outputs or (KNEE_OUTPUTS if chain == "knee" else ARM3_OUTPUTS)
    n_in, n_out = 6 * len(imus), output_width(outputs)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(n_in, hidden, layers, batch_first=True)
            self.head = torch.nn.Linear(hidden, n_out)

        def forward(self, imu, h0):
            z, hn = self.gru(imu * 0.1, h0)
            return self.head(z), hn

    torch.manual_seed(seed)
    net = Net().eval()
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, n_in), torch.zeros(layers, 1, hidden)),
                          str(onnx_path), input_names=["imu", "h0"], output_names=["y", "hn"],
                          dynamic_axes={"imu": {0: "batch", 1: "T"}, "h0": {1: "batch"},
                                        "y": {0: "batch", 1: "T"}, "hn": {1: "batch"}},
                          dynamo=False, opset_version=17)
    write_card(_card(name, onnx_path, ch, imus, outputs, rate_hz, hidden, layers),
               onnx_path.with_suffix(".json"))
    return onnx_path


def _card(name: str, onnx_path: Path, ch, imus, outputs, rate_hz, hidden, layers) -> ModelCard:
    return ModelCard(
        name=name, onnx_file=onnx_path.name, sha256=sha256_of(onnx_path),
        chain=str(CHAINS / f"{ch.name}.yaml"), bodies=ch.body_names, imus=tuple(imus),
        rate_hz=rate_hz, input_name="imu", state=(StateTensor("h0", "hn", (layers, hidden)),),
        output_name="y", outputs=tuple(OutputBody(b, e) for b, e in outputs),
        training={"recipe": "untrained random weights (test model)"})


def build_corrupt(folder: Path, name: str = "corrupt", seed: int = 0) -> Path:
    """Random bytes named ``name.onnx`` with a knee card whose sha256 matches them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    ch = load_chain(CHAINS / "knee.yaml")
    write_card(_card(name, path, ch, ch.imu_names, KNEE_OUTPUTS, 100.0, 16, 2),
               path.with_suffix(".json"))
    return path


def synth_frames(chain: str = "knee", n: int = 500, rate_hz: float = 100.0, seed: int = 1,
                 imus: tuple[str, ...] | None = None, t0_ns: int = 10**12) -> np.ndarray:
    """(n,) ``imu.frame`` samples of simulated motion (acc m/s^2, gyr rad/s, sensor frame)."""
    ch = load_chain(CHAINS / f"{chain}.yaml")
    rec = simulate(ch, n / rate_hz + 0.5, rate_hz, seed, noise=ImuNoise())
    order = [ch.imu_names.index(i) for i in (imus or ch.imu_names)]
    out = np.zeros(n, dtype=frame_dtype(len(order)))
    out["t_host"] = t0_ns + np.arange(n, dtype=np.int64) * round(1e9 / rate_hz)
    out["acc"] = rec.acc[:n, order]
    out["gyr"] = rec.gyr[:n, order]
    return out


class FrameSource(Source):
    """Paced imu.frame source of simulated motion, with optional missing frames and a pause.

    Ports:
        imu.frame (out): frames in ``imus`` order at ``rate_hz``; ``t_host`` ns on a regular
            grid from the start time (plus ``pause_s`` after ``pause_at``).
    """

    outputs = (FRAME,)

    @dataclass(frozen=True)
    class Params:
        chain: str = "knee"
        total: int = 500  # frames, then the stream ends
        rate_hz: float = 100.0
        block: int = 1  # frames per message
        imus: list[str] | None = None  # sensor order of the stream (default: chain order)
        missing: list[int] | None = None  # [start, stop) frames flagged MISSING (values NaN)
        pause_at: int = -1  # frame index before which the stream pauses pause_s
        pause_s: float = 0.0
        seed: int = 1
        report: str = ""  # JSON file with the emitted t_host list, written at the end

    def setup(self) -> None:
        p = self.params
        self._frames = synth_frames(p.chain, p.total, p.rate_hz, p.seed,
                                    tuple(p.imus) if p.imus else None, t0_ns=0)
        if p.missing:
            a, b = p.missing
            self._frames["flags"][a:b] = int(FrameFlag.MISSING)
            self._frames["acc"][a:b] = np.nan
            self._frames["gyr"][a:b] = np.nan
        names = p.imus or list(load_chain(CHAINS / f"{p.chain}.yaml").imu_names)
        self.declare(FRAME, frame_info(f"{self.id}/{FRAME}", names, p.rate_hz))
        self._next, self._sent = 0, []

    def on_start(self) -> None:
        self._t0 = time.monotonic_ns()

    def _due_ns(self, k: int) -> int:
        p = self.params
        extra = int(p.pause_s * 1e9) if 0 <= p.pause_at <= k else 0
        return self._t0 + round(k * 1e9 / p.rate_hz) + extra

    def poll(self, timeout_s: float) -> bool:
        p = self.params
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while self._next < p.total:
            n = min(p.block, p.total - self._next)
            due = self._due_ns(self._next + n - 1)
            if due > deadline:
                time.sleep(max(deadline - time.monotonic_ns(), 0) / 1e9)
                return True
            time.sleep(max(due - time.monotonic_ns(), 0) / 1e9)
            blk = self._frames[self._next:self._next + n].copy()
            blk["t_host"] = [self._due_ns(k) for k in range(self._next, self._next + n)]
            self.emit(FRAME, blk, t_host=int(blk["t_host"][0]))
            self._sent.extend(int(t) for t in blk["t_host"])
            self._next += n
        return False

    def on_stop(self) -> None:
        if self.params.report:
            _write_json(self.params.report, {"t_host": self._sent})


class StateSink(Node):
    """Records every chain.state message: sequence number, sample t_host, gap flag, model.

    Ports:
        state: chain.state (q_rel w,x,y,z; angle rad).
    """

    inputs = {"state": Input(accepts=(STATE,))}

    @dataclass(frozen=True)
    class Params:
        report: str  # JSON file written at the end of the stream and at teardown

    def setup(self) -> None:
        self._rec: dict[str, list] = {"seq": [], "n": [], "gap": [], "model": [], "t_host": [],
                                      "angle": []}

    def on_block(self, port: str, block: Block) -> None:
        r = self._rec
        r["seq"].append(block.header.seq)
        r["n"].append(block.n)
        r["gap"].append(bool(block.gap))
        r["model"].append(block.info.meta.get("model", ""))
        r["t_host"].extend(int(t) for t in block.data["t_host"])
        r["angle"].extend(block.data["angle"].tolist())

    def on_eos(self) -> None:
        _write_json(self.params.report, self._rec)

    def teardown(self) -> None:
        _write_json(self.params.report, self._rec)


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def build_nonfinite(folder: Path, name: str, value: float = float("nan"), seed: int = 3) -> Path:
    """A knee model like :func:`build_model` whose output layer's bias is ``value`` (NaN, inf)."""
    import onnx
    from onnx import numpy_helper

    path = build_model(folder, name, layers=1, seed=seed)
    model = onnx.load(str(path))
    biases = [t for t in model.graph.initializer if t.name.endswith("head.bias")]
    assert biases, [t.name for t in model.graph.initializer]
    arr = numpy_helper.to_array(biases[0]).copy()
    arr[:] = value
    biases[0].CopyFrom(numpy_helper.from_array(arr, biases[0].name))
    onnx.save(model, str(path))
    ch = load_chain(CHAINS / "knee.yaml")
    write_card(_card(name, path, ch, ch.imu_names, KNEE_OUTPUTS, 100.0, 16, 1),
               path.with_suffix(".json"))
    return path
