"""Compiled one-frame step of the project's GRU observer: numba, weights read from the ONNX file.

Why: at 100 Hz a step runs every 10 ms, and on the machines measured (KVM guests)
the onnxruntime call then costs 275-285 us of CPU instead of 28-49 us in a hot
loop: its long code path is cold again by the next frame. This kernel does the
same arithmetic with a small code path (87-114 us at 100 Hz for the shipped
models; ``imuflow bench observer``, BENCHMARKS.md).

Only graphs exported by ``tools/training/export.py`` from
``tools.training.network.Observer`` are recognised: per-feature normalisation,
Linear + GELU embedding, stacked ONNX GRU layers (``linear_before_reset=1``,
forward, default activations), Linear + GELU + Linear head, and for a hybrid model
(``input.prior``) the prior's columns of the raw input added to the head's output. The
weights are read
from the ONNX initializers (no pickle) and the step is checked against
onnxruntime on random input at load (:func:`compile_step`); any other graph, or
a mismatch above :data:`MATCH_TOL`, keeps the onnxruntime step. The kernels keep
the GIL: releasing it for ~50 us would let another thread take it, and getting it
back can cost the data path up to the interpreter's switch interval (5 ms).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import onnx
from onnx import numpy_helper

MATCH_TOL = 1e-5  # max abs difference to onnxruntime (outputs and state) to use the kernel
CHECK_STEPS = 64  # random frames the kernel is checked on at load

_GELU = ["Div", "Erf", "Add", "Mul", "Mul"]  # x * (1 + erf(x / sqrt 2)) * 0.5, as torch exports


class NotCompilable(Exception):
    """The ONNX graph is not the GRU observer this kernel implements (the reason says why)."""


@dataclass(frozen=True)
class GruWeights:
    """Weights of a GRU observer, float32, ``in x out``, C order (:func:`_pack` lays them out
    for the kernel).

    ``w_in``/``w_hid`` (layers, hidden, 3*hidden): input and recurrent GRU weights,
    gates z, r, h; ``b_in``/``b_hid`` (layers, 3*hidden).
    """

    mean: np.ndarray
    std: np.ndarray
    w_embed: np.ndarray
    b_embed: np.ndarray
    w_in: np.ndarray
    w_hid: np.ndarray
    b_in: np.ndarray
    b_hid: np.ndarray
    w_head1: np.ndarray
    b_head1: np.ndarray
    w_head2: np.ndarray
    b_head2: np.ndarray
    prior_at: int = -1  # hybrid: y += x[prior_at:prior_at + n_outputs] (raw input); -1: none

    @property
    def layers(self) -> int:
        """Number of GRU layers."""
        return self.w_in.shape[0]

    @property
    def hidden(self) -> int:
        """GRU hidden size."""
        return self.w_in.shape[1]

    @property
    def n_outputs(self) -> int:
        """Output size per frame."""
        return self.w_head2.shape[1]

    @functools.cached_property
    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_pack` of these weights, made once (at load, off the data path)."""
        return _pack(self)


def read_gru_weights(onnx_path: str | Path) -> GruWeights:
    """The observer weights of ``onnx_path``; NotCompilable if its graph is another network."""
    model = onnx.load(str(onnx_path))
    graph = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    ops = [n.op_type for n in nodes]
    grus = [n for n in nodes if n.op_type == "GRU"]
    layers = len(grus)
    stack = ["GRU", "Squeeze", "Transpose"] if layers == 1 else (
        ["Slice", "GRU", "Squeeze"] * layers + ["Transpose", "Concat"])  # one layer: no h0 split
    expect = ["Sub", "Div", "MatMul", "Add", *_GELU, "Transpose", *stack, "MatMul", "Add", *_GELU,
              "MatMul", "Add"]
    prior_at = -1
    if layers and ops == expect + ["Slice", "Add"]:  # hybrid: the prior's input columns added
        prior_at = _prior_slice(graph, nodes[-2], nodes[-1])
        nodes = nodes[:-2]
    elif not layers or ops != expect:
        raise NotCompilable(f"graph ops {ops[:12]}... are not the GRU observer's")
    for g in grus:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in g.attribute}
        extra = set(attrs) - {"hidden_size", "linear_before_reset"}
        if attrs.get("linear_before_reset") != 1 or extra:
            raise NotCompilable(f"GRU attributes {attrs} (need linear_before_reset=1 only)")

    def weight(node: onnx.NodeProto) -> np.ndarray:
        names = [i for i in node.input if i in init]
        if len(names) != 1:
            raise NotCompilable(f"{node.op_type} {node.name} has {len(names)} initializers")
        return init[names[0]].astype(np.float32)

    sub, div, mm1, add1 = nodes[:4]
    mm2, add2, mm3, add3 = nodes[-9], nodes[-8], nodes[-2], nodes[-1]
    w_in, w_hid, biases = [], [], []
    for g in grus:
        w, r, b = (init.get(name) for name in g.input[1:4])
        if w is None or r is None or b is None or (len(g.input) > 4 and g.input[4]):
            raise NotCompilable("GRU weights are not constant or a sequence_lens input is set")
        w_in.append(w[0].T)
        w_hid.append(r[0].T)
        biases.append(b[0])
    shapes = {a.shape for a in w_in} | {a.shape for a in w_hid}
    if len(shapes) != 1:
        raise NotCompilable(f"GRU layers of different sizes {sorted(shapes)}")
    hidden = w_hid[0].shape[0]
    head1, head2 = weight(mm2), weight(mm3)
    if head1.shape != (hidden, hidden) or head2.shape[0] != hidden:
        raise NotCompilable(f"head weights {head1.shape}, {head2.shape} do not fit hidden {hidden}")
    b = np.stack(biases).astype(np.float32)
    c = np.ascontiguousarray
    return GruWeights(
        mean=c(weight(sub)), std=c(weight(div)), w_embed=c(weight(mm1)), b_embed=c(weight(add1)),
        w_in=c(np.stack(w_in), np.float32), w_hid=c(np.stack(w_hid), np.float32),
        b_in=c(b[:, :3 * hidden]), b_hid=c(b[:, 3 * hidden:]),
        w_head1=c(head1), b_head1=c(weight(add2)), w_head2=c(head2),
        b_head2=c(weight(add3)), prior_at=prior_at)


def _prior_slice(graph: onnx.GraphProto, sl: onnx.NodeProto, add: onnx.NodeProto) -> int:
    """First input column of a hybrid's ``y = head + imu[..., a:a + n_out]``; NotCompilable
    unless the Slice takes the graph's input along its last axis with step 1."""
    const = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
             for n in graph.node if n.op_type == "Constant" and n.attribute}
    args = [const.get(name) for name in sl.input[1:]]
    if sl.input[0] != graph.input[0].name or any(a is None for a in args) or len(args) < 3:
        raise NotCompilable("the hybrid's Slice does not read constant columns of the input")
    start, end, axes = (int(np.ravel(a)[0]) for a in args[:3])
    step = int(np.ravel(args[3])[0]) if len(args) > 3 else 1
    if axes not in (-1, 2) or step != 1 or sl.output[0] not in add.input or start < 0:
        raise NotCompilable(f"the hybrid's Slice [{start}:{end}] axis {axes} step {step} is not "
                            "the prior's columns")
    return start


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _affine(v: np.ndarray, w_t: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = v @ w_t.T + b (w_t: out x in), float32.

    One dot product per output: with reassociation allowed (only here) each vectorises,
    1.5x faster than accumulating rows into ``out``; the order of the sums is then the
    compiler's, within MATCH_TOL of onnxruntime's (checked at load).
    """
    for j in range(w_t.shape[0]):
        total = np.float32(0.0)
        for i in range(w_t.shape[1]):
            total += v[i] * w_t[j, i]
        out[j] = b[j] + total


@numba.njit(cache=True)
def _gelu(v: np.ndarray) -> None:
    """Exact GELU in place: v * (1 + erf(v / sqrt 2)) / 2."""
    for i in range(v.shape[0]):
        v[i] = v[i] * (1.0 + math.erf(v[i] / math.sqrt(2.0))) * 0.5


_FIELDS = ("mean", "std", "w_embed", "b_embed", "w_in", "w_hid", "b_in", "b_hid", "w_head1",
           "b_head1", "w_head2", "b_head2")  # the order of the packed weights
_MATRICES = ("w_embed", "w_in", "w_hid", "w_head1", "w_head2")  # packed transposed


def _pack(w: GruWeights) -> tuple[np.ndarray, np.ndarray]:
    """All weights in one float32 buffer (field order of _FIELDS) and the sizes (f, hid, L, out).

    One argument instead of twelve: numba checks and unboxes every array argument on each
    call, a few us per step.
    """
    # matrices transposed (out x in): the kernel's _affine takes one row per output
    flat = np.concatenate([np.swapaxes(getattr(w, name), -1, -2).ravel() if name in _MATRICES
                           else getattr(w, name).ravel() for name in _FIELDS]).astype(np.float32)
    dims = np.array([w.w_embed.shape[0], w.hidden, w.layers, w.n_outputs], np.int64)
    return flat, dims


@numba.njit(cache=True)
def _take(flat: np.ndarray, at: int, n: int) -> tuple[np.ndarray, int]:
    """The ``n`` values of ``flat`` from ``at`` on, and the offset after them."""
    return flat[at:at + n], at + n


@numba.njit(cache=True)
def _gru_step(x, flat, dims, h_in, h_out, y, scratch):  # pragma: no cover - numba
    """One frame: x (n_features,) raw SI -> y (n_outputs,); h_in -> h_out (layers, 1, hidden).

    ``flat``/``dims`` from :func:`_pack`; ``scratch`` float32 of f + 8 * hidden values.
    """
    f, hid, layers, n_out = dims[0], dims[1], dims[2], dims[3]
    g3 = 3 * hid
    mean, at = _take(flat, 0, f)
    std, at = _take(flat, at, f)
    w_embed, at = _take(flat, at, f * hid)
    b_embed, at = _take(flat, at, hid)
    w_in, at = _take(flat, at, layers * hid * g3)
    w_hid, at = _take(flat, at, layers * hid * g3)
    b_in, at = _take(flat, at, layers * g3)
    b_hid, at = _take(flat, at, layers * g3)
    w_head1, at = _take(flat, at, hid * hid)
    b_head1, at = _take(flat, at, hid)
    w_head2, at = _take(flat, at, hid * n_out)
    b_head2, at = _take(flat, at, n_out)
    xn, e, gx, gh, z1 = (scratch[:f], scratch[f:f + hid], scratch[f + hid:f + hid + g3],
                         scratch[f + hid + g3:f + hid + 2 * g3],
                         scratch[f + hid + 2 * g3:f + 2 * hid + 2 * g3])
    w_in3 = w_in.reshape((layers, g3, hid))
    w_hid3 = w_hid.reshape((layers, g3, hid))
    for i in range(f):
        xn[i] = (x[i] - mean[i]) / std[i]
    _affine(xn, w_embed.reshape((hid, f)), b_embed, e)
    _gelu(e)
    for layer in range(layers):
        h = h_in[layer, 0]
        _affine(e, w_in3[layer], b_in[layer * g3:(layer + 1) * g3], gx)
        _affine(h, w_hid3[layer], b_hid[layer * g3:(layer + 1) * g3], gh)
        out = h_out[layer, 0]
        for j in range(hid):
            z = 1.0 / (1.0 + math.exp(-(gx[j] + gh[j])))
            r = 1.0 / (1.0 + math.exp(-(gx[hid + j] + gh[hid + j])))
            n = math.tanh(gx[2 * hid + j] + r * gh[2 * hid + j])
            out[j] = (1.0 - z) * n + z * h[j]
        e[:] = out
    _affine(e, w_head1.reshape((hid, hid)), b_head1, z1)
    _gelu(z1)
    _affine(z1, w_head2.reshape((n_out, hid)), b_head2, y)


class CompiledStep:
    """One-frame steps with the compiled kernel; the interface of ``StepBinding``.

    Write the frame's features into ``x`` (1, n_features) float32 (acc m/s^2 then gyr
    rad/s per IMU, sensor frame), then ``run(state)``. The hidden state ping-pongs
    between two buffer sets owned here; ``y`` (1, n_outputs) is overwritten by the next run.
    """

    def __init__(self, weights: GruWeights) -> None:
        f, hid = weights.w_embed.shape
        self._flat, self._dims = weights.packed
        self.x = np.zeros((1, f), np.float32)
        self.y = np.zeros((1, weights.n_outputs), np.float32)
        self._x0, self._y0 = self.x[0], self.y[0]
        at = weights.prior_at
        self._prior = self._x0[at:at + weights.n_outputs] if at >= 0 else None
        shape = (weights.layers, 1, hid)
        self._states = ([np.zeros(shape, np.float32)], [np.zeros(shape, np.float32)])
        self._scratch = np.zeros(f + 8 * hid, np.float32)

    def run(self, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step on ``x`` from ``state``: ``y`` (1, n_outputs) view and the new state."""
        states = self._states
        k = 0 if state is states[0] else 1 if state is states[1] else -1
        if k < 0:  # a state from elsewhere (fresh, or from a block run): copy it in
            np.copyto(states[0][0], state[0])
            k = 0
        _gru_step(self._x0, self._flat, self._dims, states[k][0], states[1 - k][0], self._y0,
                  self._scratch)
        if self._prior is not None:
            self._y0 += self._prior
        return self.y, states[1 - k]


def compile_step(onnx_path: str | Path, run_onnx, n_features: int, state_shape: tuple[int, int],
                 seed: int = 0) -> GruWeights:
    """Read the weights and check the kernel against onnxruntime on random frames.

    ``run_onnx(x (T, n_features), state) -> (y, state)`` is the session's block run.
    Raises NotCompilable with the reason (other graph, other sizes, or a difference
    above MATCH_TOL).
    """
    w = read_gru_weights(onnx_path)
    if (w.w_embed.shape[0], (w.layers, w.hidden)) != (n_features, tuple(state_shape)):
        raise NotCompilable(f"weights take {w.w_embed.shape[0]} features and state "
                            f"{(w.layers, w.hidden)}; the card says {n_features}, {state_shape}")
    rng = np.random.default_rng(seed)
    x = (w.mean + w.std * rng.normal(size=(CHECK_STEPS, n_features))).astype(np.float32)
    y_ref, state_ref = run_onnx(x, [np.zeros((w.layers, 1, w.hidden), np.float32)])
    step = CompiledStep(w)
    state = [np.zeros((w.layers, 1, w.hidden), np.float32)]
    worst = 0.0
    for t in range(CHECK_STEPS):
        step.x[0] = x[t]
        y, state = step.run(state)
        worst = max(worst, float(np.abs(y[0] - y_ref[t]).max()))
    worst = max(worst, float(np.abs(state[0] - state_ref[0]).max()))
    if not worst <= MATCH_TOL:
        raise NotCompilable(f"kernel differs from onnxruntime by {worst:.3g} > {MATCH_TOL}")
    return w
