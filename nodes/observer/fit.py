"""Does a model fit the graph? Chain, IMU order and rate checks, and the output decoder.

``fit_model(card, chain, imus, rate_hz)`` returns a :class:`ModelFit` that turns
raw ``imu.frame`` samples into the model's input (reordering sensors when the
stream has the card's sensors in another order) and the model's output into
``chain.state`` fields. It raises ModelRejected, naming what differs, when:

- the chain's bodies (names, parents, joint types) differ from the card's chain;
- the stream's IMU names are not the card's IMU set;
- the stream rate differs from ``card.rate_hz`` by more than 1 %.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nodes.observer.decode_frame import decode_frame, frame_plan
from pipeline.estimation.constraint_prior import ConstraintPrior
from pipeline.estimation.output_encoding import ENCODING_SIZE
from pipeline.evaluation.model_card import ModelCard
from pipeline.kinematics.chain import Chain, ChainError, JointType, load_chain
from pipeline.kinematics.quaternion import up_to_heading_free
from pipeline.runtime.errors import ModelRejected

log = logging.getLogger("imuflow.observer_fit")

RATE_TOLERANCE = 0.01  # relative
_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)  # w, x, y, z
_IDENTITY.flags.writeable = False


def card_chain_path(card: ModelCard, search: tuple[Path, ...] = ()) -> Path | None:
    """The card's chain file: as written, in ``search`` folders, or next to the models folder."""
    p = Path(card.chain)
    bases = list(search)
    if card.path is not None:
        bases += [card.path.parent.parent, card.path.parent]
    for cand in [p] + [Path(b) / p for b in bases]:
        if cand.exists():
            return cand
    return None


def chain_for(card: ModelCard, graph_chain: Path | None, search: tuple[Path, ...] = ()) -> Chain:
    """The chain the observer publishes for: the graph's ``chain:``, else the card's chain."""
    path = graph_chain if graph_chain is not None else card_chain_path(card, search)
    if path is None:
        raise ModelRejected(f"{card.path}: the graph has no 'chain:' and the card's chain "
                            f"'{card.chain}' is not found; add 'chain: <file>' to the graph")
    try:
        return load_chain(path)
    except ChainError as exc:
        raise ModelRejected(f"chain for model {card.name}: {exc}") from None


def check_chain(card: ModelCard, chain: Chain, search: tuple[Path, ...] = ()) -> None:
    """Refuse a model trained for a chain with other bodies, parents or joint types."""
    if tuple(card.bodies) != chain.body_names:
        raise ModelRejected(f"model {card.name} ({card.path}) is for bodies {list(card.bodies)} "
                            f"(chain {card.chain}), the graph's chain '{chain.name}' has "
                            f"{list(chain.body_names)}")
    path = card_chain_path(card, search)
    if path is None:
        log.warning("model %s: chain file %s not found; checked body names only", card.name,
                    card.chain)
        return
    try:
        theirs = load_chain(path)
    except ChainError as exc:
        raise ModelRejected(f"model {card.name}: its chain file is invalid: {exc}") from None
    for a, b in zip(theirs.bodies, chain.bodies):
        if a.parent != b.parent or a.joint.type != b.joint.type:
            raise ModelRejected(
                f"model {card.name} ({card.path}): body '{a.name}' has parent {a.parent!r} and "
                f"joint {a.joint.type.name.lower()} in {path}, but parent {b.parent!r} and joint "
                f"{b.joint.type.name.lower()} in the graph's chain '{chain.name}'")
        if b.joint.type == JointType.HINGE and not np.allclose(a.joint.axis, b.joint.axis):
            raise ModelRejected(f"model {card.name}: hinge '{a.name}' axis {a.joint.axis} in "
                                f"{path}, {b.joint.axis} in the graph's chain '{chain.name}'")


def imu_order(card: ModelCard, stream_imus: list[str] | tuple[str, ...]) -> np.ndarray:
    """Index into the stream's sensors for each card IMU, in card order (refuse other sets)."""
    stream_imus = list(stream_imus)
    if sorted(stream_imus) != sorted(card.imus) or len(set(stream_imus)) != len(stream_imus):
        raise ModelRejected(f"model {card.name} ({card.path}) takes IMUs {list(card.imus)}, the "
                            f"input stream has {stream_imus}; wire a sync node with exactly "
                            "these sensors or pick a model for this sensor set")
    return np.array([stream_imus.index(n) for n in card.imus], dtype=np.int64)


def check_rate(card: ModelCard, rate_hz: float) -> None:
    """Refuse a stream whose rate differs from the card's by more than 1 %."""
    if abs(rate_hz - card.rate_hz) > RATE_TOLERANCE * card.rate_hz:
        raise ModelRejected(f"model {card.name} ({card.path}) was trained at {card.rate_hz:g} "
                            f"Hz, the input stream runs at {rate_hz:g} Hz (more than 1 % off); "
                            "resample in the sync node or pick a model for this rate")


@dataclass
class ModelFit:
    """Maps frames to model input and model output to ``chain.state`` fields for one chain.

    Attributes:
        perm: (n_imu,) stream sensor index for each card IMU.
        n_bodies, n_hinge: sizes of the ``chain.state`` sample.
        estimated: body names the model outputs (the others stay identity / angle 0).
        all_sensors: True when ``perm`` is a permutation (the model input holds every sensor).
        prior: a hybrid model's constraint prior (stateful: every frame goes through
            :meth:`features` once, in order).
    """

    card: ModelCard
    chain: Chain
    perm: np.ndarray
    estimated: tuple[str, ...]
    prior: ConstraintPrior | None = None

    def __post_init__(self) -> None:
        ch = self.chain
        hinges = [int(i) for i in ch.hinge_bodies]
        self.n_bodies, self.n_hinge = ch.n_bodies, len(hinges)
        quat: list[tuple[int, int, int]] = []  # (col, body, hinge slot or -1)
        sincos: list[tuple[int, int, int]] = []
        up: list[tuple[int, int]] = []  # (col, body)
        col = 0
        for o in self.card.outputs:
            b = ch.index(o.body)
            h = hinges.index(b) if b in hinges else -1
            if o.encoding == "sincos" and h < 0:
                raise ModelRejected(f"model {self.card.name}: output '{o.body}' is sincos but "
                                    f"'{o.body}' is not a hinge in chain '{ch.name}'")
            if o.encoding == "up":
                if ch.parents[b] >= 0:
                    raise ModelRejected(f"model {self.card.name}: output '{o.body}' is 'up' but "
                                        f"'{o.body}' is not the root of chain '{ch.name}'")
                up.append((col, b))
            else:
                (quat if o.encoding == "quat" else sincos).append((col, b, h))
            col += ENCODING_SIZE[o.encoding]
        self._quat = _QuatDecoder(quat, ch) if quat else None
        self._sincos = _SincosDecoder(sincos, ch) if sincos else None
        self._up = up[0] if up else None
        # one frame in one compiled call, unless a hinge body's quaternion needs its twist
        twist = self._quat is not None and self._quat.hinged is not None
        self._frame_plan = None if twist else frame_plan(
            self._sincos._one if self._sincos else [], [(c, b) for c, b, _ in quat], self._up)
        done = {b for _, b, _ in quat + sincos} | {b for _, b in up}
        rest = [b for b in range(ch.n_bodies) if b not in done]
        self._rest_bodies = _index(rest) if rest else None
        rest = [i for i, b in enumerate(hinges) if b not in done]
        self._rest_hinges = _index(rest) if rest else None
        self._identity_perm = np.array_equal(self.perm, np.arange(len(self.perm)))
        self.all_sensors = bool(np.array_equal(np.sort(self.perm), np.arange(len(self.perm))))

    def fill_unestimated(self, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """Identity ``q_rel`` (n, n_bodies, 4) and angle 0 (rad) for what the model does not output."""
        if self._rest_bodies is not None:
            q_rel[:, self._rest_bodies] = _IDENTITY
        if self._rest_hinges is not None:
            angle[:, self._rest_hinges] = 0.0

    def features(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Model input (n, n_features) float32 from ``imu.frame`` samples (n,), card IMU order:
        acc m/s^2 and gyr rad/s per IMU, then a hybrid model's prior.

        ``out``: optional C-contiguous (n, n_features) float32 array to write into and return.
        """
        n, k = len(frames), len(self.perm)
        x = np.empty((n, self.card.n_features), np.float32) if out is None else out
        acc, gyr = frames["acc"], frames["gyr"]
        if not self._identity_perm or acc.shape[1] != k:
            acc, gyr = acc[:, self.perm], gyr[:, self.perm]
        x3 = x[:, :6 * k].reshape(n, k, 6)  # a view: only the contiguous last axis is split
        x3[:, :, :3] = acc
        x3[:, :, 3:] = gyr
        if self.prior is not None:
            x[:, 6 * k:] = self.prior.features(acc, gyr)
        return x

    def decode(self, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """Write model output ``y`` (n, n_out) into ``q_rel`` (n, n_bodies, 4), ``angle`` (n, n_hinge) rad."""
        if len(y) == 1 and self._frame_plan is not None:
            decode_frame(y, *self._frame_plan, q_rel, angle)  # the live step: same numbers
            return
        if self._quat is not None:
            self._quat.decode(y, q_rel, angle)
        if self._sincos is not None:
            self._sincos.decode(y, q_rel, angle)
        if self._up is not None:
            _decode_up(y, *self._up, q_rel)


def _decode_up(y: np.ndarray, col: int, body: int, q_rel: np.ndarray) -> None:
    """q_rel[:, body] = the heading-free quaternion of the vertical y[:, col:col + 3]."""
    if len(y) > 1:
        q_rel[:, body] = up_to_heading_free(y[:, col:col + 3])
        return
    # one frame (the live step): up_to_heading_free in Python floats
    x, y_, z = y[0, col:col + 3].tolist()
    n = math.sqrt(x * x + y_ * y_ + z * z)
    if n == 0.0 or math.isnan(n):
        q_rel[0, body] = (1.0, 0.0, 0.0, 0.0) if n == 0.0 else (math.nan,) * 4
        return
    w, qx, qy = 1.0 + z / n, y_ / n, -x / n
    m = math.sqrt(w * w + qx * qx + qy * qy)
    q_rel[0, body] = (w / m, qx / m, qy / m, 0.0) if m > 1e-12 else (0.0, 1.0, 0.0, 0.0)


class _QuatDecoder:
    """All quaternion outputs at once: normalise, and the twist angle for hinge bodies."""

    def __init__(self, outs: list[tuple[int, int, int]], ch: Chain) -> None:
        self.cols = _index([c + i for c, _, _ in outs for i in range(4)])
        self.bodies = _index([b for _, b, _ in outs])
        hinged = [i for i, (_, _, h) in enumerate(outs) if h >= 0]
        self.hinged = _index(hinged) if hinged else None
        self.slots = _index([outs[i][2] for i in hinged]) if hinged else None
        # twist about the axis of q_j = conj(rotation) * q: (axis . vec(q_j), w(q_j)), linear in q
        rows = []
        for i in hinged:
            b = outs[i][1]
            lc = _left_matrix(ch.rotations[b] * [1, -1, -1, -1])
            rows.append([ch.axes[b] @ lc[1:], lc[0]])
        self.twist = np.array(rows, dtype=np.float64).reshape(-1, 2, 4)  # (n_hinged, 2, 4)

    def decode(self, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """Write normalised quaternions (and twist angles, rad, (-pi, pi]) of ``y`` (n, n_out)."""
        q = y[:, self.cols].astype(np.float64).reshape(len(y), -1, 4)  # (n, n_quat, 4)
        q /= np.maximum(np.sqrt(np.add.reduce(q * q, axis=2, keepdims=True)), 1e-12)
        q_rel[:, self.bodies] = q
        if self.hinged is not None:
            yx = np.matmul(self.twist, q[:, self.hinged, :, None])  # (n, n_hinged, 2, 1)
            a = 2.0 * np.arctan2(yx[:, :, 0, 0], yx[:, :, 1, 0])
            angle[:, self.slots] = np.where(a > np.pi, a - 2 * np.pi,
                                            np.where(a <= -np.pi, a + 2 * np.pi, a))


class _SincosDecoder:
    """All sin/cos hinge outputs at once: angle = arctan2(sin, cos), q_rel linear in half-angle."""

    def __init__(self, outs: list[tuple[int, int, int]], ch: Chain) -> None:
        self.sin = _index([c for c, _, _ in outs])
        self.cos = _index([c + 1 for c, _, _ in outs])
        bodies = [b for _, b, _ in outs]
        self.bodies = _index(bodies)
        self.slots = _index([h for _, _, h in outs])
        # q_rel = rotation * (cos(a/2), sin(a/2) axis) = cos(a/2) L[:, 0] + sin(a/2) L[:, 1:] axis
        lms = [_left_matrix(ch.rotations[b]) for b in bodies]
        self.w_part = np.array([lm[:, 0] for lm in lms])  # (n_sincos, 4)
        self.axis_part = np.array([lm[:, 1:] @ ch.axes[b] for lm, b in zip(lms, bodies)])
        # identity joint rotations and +x/+y/+z axes (the usual case): q_rel = (cos, sin on the
        # axis component, 0, 0) exactly, written without float64 temporaries
        comp = [int(np.flatnonzero(ch.axes[b])[0]) + 1 if _is_unit_axis(ch.axes[b]) else -1
                for b in bodies]
        simple = min(comp) > 0 and np.array_equal(self.w_part, np.tile([1.0, 0, 0, 0],
                                                                       (len(bodies), 1)))
        self.axis_comp = (np.array(bodies, np.intp), np.array(comp, np.intp)) if simple else None
        self._one = [(c, c + 1, b, h, tuple(wp), tuple(ap)) for (c, b, h), wp, ap
                     in zip(outs, self.w_part.tolist(), self.axis_part.tolist(), strict=True)]

    def decode(self, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """Write hinge angles (rad) and the hinge bodies' q_rel of ``y`` (n, n_out)."""
        if len(y) == 1:
            self._decode_one(y, q_rel, angle)
            return
        # (n, n_sincos) rad, in float64 as the one-frame path's Python floats
        a = np.arctan2(y[:, self.sin].astype(np.float64), y[:, self.cos].astype(np.float64))
        angle[:, self.slots] = a
        half = a * 0.5
        c, s = np.cos(half), np.sin(half)
        if self.axis_comp is None:
            q_rel[:, self.bodies] = c[:, :, None] * self.w_part + s[:, :, None] * self.axis_part
            return
        q_rel[:, self.bodies] = (s * 0.0)[:, :, None]  # 0 (NaN when the output is NaN)
        q_rel[:, self.bodies, 0] = c
        q_rel[:, self.axis_comp[0], self.axis_comp[1]] = s

    def _decode_one(self, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """:meth:`decode` of one frame (the live step) in Python floats: a dozen numpy calls
        fewer, each of which costs most when a 100 Hz frame finds the caches cold."""
        row = y[0].tolist()
        for sin_col, cos_col, body, slot, w_part, axis_part in self._one:
            a = math.atan2(row[sin_col], row[cos_col])
            angle[0, slot] = a
            c, s = math.cos(0.5 * a), math.sin(0.5 * a)
            q_rel[0, body] = tuple(c * w + s * v for w, v in zip(w_part, axis_part, strict=True))


def _is_unit_axis(axis: np.ndarray) -> bool:
    """True for the axes +x, +y, +z exactly."""
    return bool(np.count_nonzero(axis) == 1 and axis.max() == 1.0)


def _index(ids: list[int]) -> slice | np.ndarray:
    """``ids`` as a slice when evenly spaced and increasing (a view, no gather), else an array."""
    step = ids[1] - ids[0] if len(ids) > 1 else 1
    if step > 0 and all(b - a == step for a, b in itertools.pairwise(ids)):
        return slice(ids[0], ids[-1] + 1, step)
    return np.array(ids, dtype=np.intp)


def _left_matrix(q: np.ndarray) -> np.ndarray:
    """(4, 4) matrix L with L @ p = q * p (Hamilton product, w,x,y,z)."""
    w, x, y, z = q
    return np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])


def fit_model(card: ModelCard, chain: Chain, stream_imus: list[str] | tuple[str, ...],
              rate_hz: float, search: tuple[Path, ...] = (),
              levers: Mapping[str, np.ndarray] | None = None) -> ModelFit:
    """Check ``card`` against the graph's chain and input stream; ModelRejected if it misfits.
    ``levers``: a calibration's joint centres for a hybrid's prior (:func:`prior_for`)."""
    check_chain(card, chain, search)
    check_rate(card, rate_hz)
    perm = imu_order(card, stream_imus)
    prior = prior_for(card, chain, rate_hz, levers) if card.prior else None
    return ModelFit(card, chain, perm, tuple(o.body for o in card.outputs), prior)


def prior_for(card: ModelCard, chain: Chain, rate_hz: float,
              levers: Mapping[str, np.ndarray] | None = None) -> ConstraintPrior:
    """A fresh constraint prior of hybrid model ``card`` on ``chain`` (``levers``: joint
    centres in place of the chain's IMU positions); ModelRejected if the chain's joints or
    IMUs do not allow one."""
    try:
        return ConstraintPrior(chain, list(card.imus), rate_hz,
                               [(o.body, o.encoding) for o in card.outputs], card.prior, levers)
    except ValueError as exc:
        raise ModelRejected(f"model {card.name}: its constraint prior does not fit chain "
                            f"'{chain.name}': {exc}") from None
