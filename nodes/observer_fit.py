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

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.chain import Chain, ChainError, JointType, load_chain
from pipeline.errors import ModelRejected
from pipeline.model_card import ModelCard

log = logging.getLogger("imuflow.observer_fit")

RATE_TOLERANCE = 0.01  # relative


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
    """

    card: ModelCard
    chain: Chain
    perm: np.ndarray
    estimated: tuple[str, ...]

    def __post_init__(self) -> None:
        ch = self.chain
        hinges = [int(i) for i in ch.hinge_bodies]
        self.n_bodies, self.n_hinge = ch.n_bodies, len(hinges)
        self._quat: list[tuple[int, int, int]] = []   # (col, body, hinge slot or -1)
        self._sincos: list[tuple[int, int, int]] = []
        col = 0
        for o in self.card.outputs:
            b = ch.index(o.body)
            h = hinges.index(b) if b in hinges else -1
            if o.encoding == "sincos" and h < 0:
                raise ModelRejected(f"model {self.card.name}: output '{o.body}' is sincos but "
                                    f"'{o.body}' is not a hinge in chain '{ch.name}'")
            (self._quat if o.encoding == "quat" else self._sincos).append((col, b, h))
            col += 4 if o.encoding == "quat" else 2
        # q_rel = rotation * (cos(a/2), sin(a/2) axis): linear in (cos, sin) per hinge body
        self._left = {b: _left_matrix(ch.rotations[b]) for b in range(ch.n_bodies)}
        self._left_conj = {b: _left_matrix(ch.rotations[b] * [1, -1, -1, -1])
                           for b in range(ch.n_bodies)}

    def features(self, frames: np.ndarray) -> np.ndarray:
        """Model input (n, n_imu*6) float32 from ``imu.frame`` samples (n,), card IMU order."""
        acc = frames["acc"][:, self.perm]
        gyr = frames["gyr"][:, self.perm]
        return np.concatenate([acc, gyr], axis=2).reshape(len(frames), -1).astype(
            np.float32, copy=False)

    def decode(self, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
        """Write model output ``y`` (n, n_out) into ``q_rel`` (n, n_bodies, 4), ``angle`` (n, n_hinge) rad."""
        ch = self.chain
        for col, b, h in self._quat:
            q = y[:, col:col + 4].astype(np.float64)
            q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            q_rel[:, b] = q
            if h >= 0:  # hinge angle of a quaternion output: twist about the axis, (-pi, pi]
                qj = q @ self._left_conj[b].T
                a = 2.0 * np.arctan2(qj[:, 1:] @ ch.axes[b], qj[:, 0])
                angle[:, h] = np.where(a > np.pi, a - 2 * np.pi,
                                       np.where(a <= -np.pi, a + 2 * np.pi, a))
        for col, b, h in self._sincos:
            a = np.arctan2(y[:, col], y[:, col + 1])
            angle[:, h] = a
            qa = np.empty((len(a), 4))
            qa[:, 0] = np.cos(0.5 * a)
            qa[:, 1:] = np.sin(0.5 * a)[:, None] * ch.axes[b]
            q_rel[:, b] = qa @ self._left[b].T


def _left_matrix(q: np.ndarray) -> np.ndarray:
    """(4, 4) matrix L with L @ p = q * p (Hamilton product, w,x,y,z)."""
    w, x, y, z = q
    return np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])


def fit_model(card: ModelCard, chain: Chain, stream_imus: list[str] | tuple[str, ...],
              rate_hz: float, search: tuple[Path, ...] = ()) -> ModelFit:
    """Check ``card`` against the graph's chain and input stream; ModelRejected if it misfits."""
    check_chain(card, chain, search)
    check_rate(card, rate_hz)
    perm = imu_order(card, stream_imus)
    return ModelFit(card, chain, perm, tuple(o.body for o in card.outputs))
