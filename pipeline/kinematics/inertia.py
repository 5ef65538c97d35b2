"""Segment inertia of chain bodies: explicit values or anthropometric defaults, resolved to arrays.

A chain YAML body may carry ``inertia:`` either explicitly (robot arms)::

    inertia: {mass: 2.1, com: [0, 0, 0.18], tensor: [0.03, 0.03, 0.004, 0, 0, 0]}

(``mass`` kg; ``com`` m in the body frame; ``tensor`` kg m^2 about the CoM in body-frame axes,
``[Ixx, Iyy, Izz, Ixy, Ixz, Iyz]`` or the diagonal ``[Ixx, Iyy, Izz]``; products of inertia
are the tensor's off-diagonal entries, i.e. ``Ixy = -sum m x y``), or as a segment of the de
Leva (1996) table scaled by the chain's ``subject: {mass_kg, height_m, sex}`` (human chains;
:mod:`pipeline.kinematics.anthropometry`)::

    inertia: {segment: thigh, axis: [0, 0, -1], start: [0, 0, 0], length_m: 0.45}

(``axis``: proximal to distal direction in the body frame, default ``[0, 0, -1]``; ``start``:
proximal endpoint in the body frame, default the origin; ``length_m``: default the table's
length scaled by height). ``mass: 0`` makes a massless body (e.g. a frozen clavicle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.kinematics.anthropometry import Sex, segment_inertia

if TYPE_CHECKING:
    from pipeline.kinematics.chain import Chain


@dataclass(frozen=True)
class BodyInertia:
    """Explicit: mass kg, com (3,) m body frame, tensor (xx, yy, zz, xy, xz, yz) kg m^2 at CoM."""

    mass: float
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tensor: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SegmentInertia:
    """De Leva segment name, axis (3,) and start (3,) m in the body frame, length m or None."""

    segment: str
    axis: tuple[float, float, float] = (0.0, 0.0, -1.0)
    start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    length_m: float | None = None


@dataclass(frozen=True)
class Subject:
    """The person a human chain is scaled to: body mass kg, height m, sex (table column)."""

    mass_kg: float
    height_m: float
    sex: Sex = "male"


class MissingInertia(ValueError):
    """A body has no usable inertia; ``file`` and ``key`` say where it belongs."""

    def __init__(self, message: str, file: str, key: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file, self.key, self.bare_message = file, key, message


@dataclass(frozen=True)
class ChainInertia:
    """Resolved inertia of every body, kernel order.

    Attributes:
        mass: (n,) float64 kg. com: (n, 3) float64 m, body frame.
        tensor: (n, 3, 3) float64 kg m^2 about the CoM, body-frame axes.
    """

    mass: np.ndarray
    com: np.ndarray
    tensor: np.ndarray

    @property
    def total_mass(self) -> float:
        """Sum of the body masses, kg."""
        return float(self.mass.sum())


def tensor_matrix(t: tuple[float, ...]) -> np.ndarray:
    """(3, 3) symmetric matrix of (Ixx, Iyy, Izz, Ixy, Ixz, Iyz)."""
    ixx, iyy, izz, ixy, ixz, iyz = t
    return np.array([[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]], dtype=np.float64)


def chain_inertia(chain: Chain, subject: Subject | None = None) -> ChainInertia:
    """Mass, CoM and tensor of every body of ``chain``; MissingInertia names file and key.

    ``subject`` overrides the chain's ``subject:`` for the anthropometric defaults.
    """
    subject = subject or chain.subject
    n = chain.n_bodies
    mass, com, tensor = np.zeros(n), np.zeros((n, 3)), np.zeros((n, 3, 3))
    for i, body in enumerate(chain.bodies):
        spec = body.inertia
        key = f"body '{body.name}' inertia"
        if spec is None:
            raise MissingInertia(
                f"body '{body.name}' has no inertia, which the dynamics need; add to it inertia: "
                "{mass: kg, com: [x, y, z] m, tensor: [Ixx, Iyy, Izz, Ixy, Ixz, Iyz] kg m^2} "
                "or, for a human segment, {segment: thigh} with the chain's "
                "subject: {mass_kg, height_m, sex} (or mass: 0 for a massless body)",
                chain.source, key)
        if isinstance(spec, BodyInertia):
            mass[i], com[i], tensor[i] = spec.mass, spec.com, tensor_matrix(spec.tensor)
            continue
        if subject is None:
            raise MissingInertia(
                f"body '{body.name}' takes its inertia from segment '{spec.segment}' of the de "
                "Leva table, which is scaled to a subject; add the top-level key subject: "
                "{mass_kg: 75, height_m: 1.75, sex: male} (or give the dynamics node's "
                "subject_mass_kg and subject_height_m)", chain.source, "subject")
        mass[i], com[i], tensor[i] = segment_inertia(
            spec.segment, subject.sex, subject.mass_kg, subject.height_m,
            np.asarray(spec.axis), np.asarray(spec.start), spec.length_m)
    return ChainInertia(mass, com, tensor)
