"""Kinematic chain model: bodies, joints, display geometry and IMU sites, loaded from YAML.

Conventions: lengths in metres, angles in radians, quaternions ``w, x, y, z`` with unit
norm. A joint's ``offset`` is the joint position in the parent body frame and its
``rotation`` the joint frame orientation in the parent frame; ``q_rel`` of a body maps
body coordinates to parent coordinates. The root's parent is the earth frame (z up).
"""

from __future__ import annotations

import enum
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.kinematics.inertia import BodyInertia, SegmentInertia, Subject

log = logging.getLogger("imuflow.chain")

_QUAT_TOL = 1e-3  # |norm - 1| below this is normalised silently, above is an error


class ChainError(ValueError):
    """A chain file is invalid; the message names file, body, key, expectation and fix."""


class JointType(enum.IntEnum):
    """Joint kinds; the integer value is the code used by the numba kernels."""

    FREE = 0
    SPHERICAL = 1
    HINGE = 2
    PRISMATIC = 3
    FROZEN = 4


NQ = {JointType.FREE: 7, JointType.SPHERICAL: 4, JointType.HINGE: 1,
      JointType.PRISMATIC: 1, JointType.FROZEN: 0}
NQD = {JointType.FREE: 6, JointType.SPHERICAL: 3, JointType.HINGE: 1,
       JointType.PRISMATIC: 1, JointType.FROZEN: 0}
SHAPES = {"box": ("size",), "sphere": ("radius",), "cylinder": ("radius", "length"),
          "capsule": ("radius", "length")}


@dataclass(frozen=True)
class Joint:
    """Joint to the parent: type, axis (unit, joint frame), offset (m, parent frame), rotation (wxyz), limits (rad or m)."""

    type: JointType
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 0.0)
    limits: tuple[float, float] | None = None

    Type = JointType


@dataclass(frozen=True)
class Geometry:
    """Display primitive in body frame: shape, dims (m; box: sx,sy,sz; sphere: r; cylinder/capsule: r, length along z), RGBA colour."""

    shape: str
    dims: tuple[float, ...]
    color: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Body:
    """A rigid body: name, parent name (None: earth), joint to parent, display geometry, inertia.

    ``inertia`` is None (not given), explicit or an anthropometric segment; resolve it with
    :func:`pipeline.kinematics.inertia.chain_inertia`.
    """

    name: str
    parent: str | None
    joint: Joint
    geometry: tuple[Geometry, ...] = ()
    inertia: BodyInertia | SegmentInertia | None = None


@dataclass(frozen=True)
class ImuSite:
    """IMU mounting: name, body, position (m, body frame), rotation (wxyz, sensor to body)."""

    name: str
    body: str
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class StillPose:
    """A still pose other than the neutral one (all joints zero) that a calibration may take:
    per named body its joint's value (hinge: angle, rad; free or spherical: rotation vector
    in the joint frame, rad; bodies not named stay at zero) and what to tell the user."""

    name: str
    joints: tuple[tuple[str, tuple[float, ...]], ...]
    prompt: str = ""


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Chain:
    """A kinematic tree; ``bodies`` are ordered parents before children.

    ``subject`` scales the anthropometric inertia defaults of human chains (None: not given);
    ``poses`` are still poses besides the neutral one, for calibration.
    """

    name: str
    bodies: tuple[Body, ...]
    imus: tuple[ImuSite, ...] = ()
    source: str = ""
    subject: Subject | None = None
    poses: tuple[StillPose, ...] = ()

    @property
    def n_bodies(self) -> int:
        """Number of bodies."""
        return len(self.bodies)

    @property
    def body_names(self) -> tuple[str, ...]:
        """Body names in kernel order."""
        return tuple(b.name for b in self.bodies)

    @property
    def imu_names(self) -> tuple[str, ...]:
        """IMU site names in file order."""
        return tuple(s.name for s in self.imus)

    def index(self, name: str) -> int:
        """Index of the body called ``name`` (KeyError with the known names otherwise)."""
        try:
            return self.body_names.index(name)
        except ValueError:
            raise KeyError(f"chain '{self.name}': no body '{name}'; bodies: {self.body_names}") from None

    @functools.cached_property
    def parents(self) -> np.ndarray:
        """(n_bodies,) int64 parent index, -1 for a root; parents come before children."""
        return _ro(np.array([-1 if b.parent is None else self.index(b.parent) for b in self.bodies],
                            dtype=np.int64))

    @functools.cached_property
    def joint_types(self) -> np.ndarray:
        """(n_bodies,) int64 JointType codes."""
        return _ro(np.array([int(b.joint.type) for b in self.bodies], dtype=np.int64))

    @functools.cached_property
    def axes(self) -> np.ndarray:
        """(n_bodies, 3) float64 unit joint axes in joint frame (zeros where unused)."""
        return _ro(np.array([b.joint.axis for b in self.bodies], dtype=np.float64).reshape(-1, 3))

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """(n_bodies, 3) float64, m, joint position in the parent frame."""
        return _ro(np.array([b.joint.offset for b in self.bodies], dtype=np.float64).reshape(-1, 3))

    @functools.cached_property
    def rotations(self) -> np.ndarray:
        """(n_bodies, 4) float64 wxyz, joint frame orientation in the parent frame."""
        return _ro(np.array([b.joint.rotation for b in self.bodies], dtype=np.float64).reshape(-1, 4))

    @functools.cached_property
    def limits(self) -> np.ndarray:
        """(n_bodies, 2) float64 joint limits (rad or m), NaN where none are given."""
        lim = [b.joint.limits if b.joint.limits is not None else (math.nan, math.nan)
               for b in self.bodies]
        return _ro(np.array(lim, dtype=np.float64).reshape(-1, 2))

    @functools.cached_property
    def q_start(self) -> np.ndarray:
        """(n_bodies,) int64 start index of each joint's coordinates in the flat q vector."""
        sizes = [NQ[b.joint.type] for b in self.bodies]
        return _ro(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))

    @functools.cached_property
    def qd_start(self) -> np.ndarray:
        """(n_bodies,) int64 start index of each joint's velocities in the flat qd vector."""
        sizes = [NQD[b.joint.type] for b in self.bodies]
        return _ro(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))

    @property
    def nq(self) -> int:
        """Length of the joint coordinate vector (free 7, spherical 4, hinge 1, prismatic 1)."""
        return sum(NQ[b.joint.type] for b in self.bodies)

    @property
    def nqd(self) -> int:
        """Length of the joint velocity vector (free 6, spherical 3, hinge 1, prismatic 1)."""
        return sum(NQD[b.joint.type] for b in self.bodies)

    @functools.cached_property
    def hinge_bodies(self) -> np.ndarray:
        """(n_hinge,) int64 indices of bodies attached by a hinge."""
        return _ro(np.flatnonzero(self.joint_types == JointType.HINGE).astype(np.int64))

    @functools.cached_property
    def imu_bodies(self) -> np.ndarray:
        """(n_imu,) int64 body index of each IMU site."""
        return _ro(np.array([self.index(s.body) for s in self.imus], dtype=np.int64))

    @functools.cached_property
    def imu_positions(self) -> np.ndarray:
        """(n_imu, 3) float64, m, IMU positions in their body frames."""
        return _ro(np.array([s.position for s in self.imus], dtype=np.float64).reshape(-1, 3))

    @functools.cached_property
    def imu_rotations(self) -> np.ndarray:
        """(n_imu, 4) float64 wxyz, sensor-to-body rotations."""
        return _ro(np.array([s.rotation for s in self.imus], dtype=np.float64).reshape(-1, 4))

    def q_zero(self) -> np.ndarray:
        """(nq,) float64 neutral coordinates: zero angles/displacements, identity quaternions."""
        q = np.zeros(self.nq)
        for i, b in enumerate(self.bodies):
            if b.joint.type == JointType.FREE:
                q[self.q_start[i] + 3] = 1.0
            elif b.joint.type == JointType.SPHERICAL:
                q[self.q_start[i]] = 1.0
        return q


_MAX_CHAIN_BYTES = 1 << 20
_MAX_ALIASES = 100


class _ChainLoader(yaml.SafeLoader):
    """SafeLoader that refuses more than _MAX_ALIASES aliases (no exponential expansion)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Count aliases as they are composed."""
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > _MAX_ALIASES:
                raise yaml.YAMLError(f"more than {_MAX_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


def load_chain(path: str | Path) -> Chain:
    """Load and validate a chain YAML file; raises ChainError naming file, body and key."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CHAIN_BYTES + 1)
    except OSError as e:
        raise ChainError(f"{path}: cannot read chain file ({e.strerror})") from e
    if len(raw) > _MAX_CHAIN_BYTES:
        raise ChainError(f"{path}: over {_MAX_CHAIN_BYTES // 1024} KB: not a chain file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ChainError(f"{path}:{line}: not UTF-8 text; save the chain file as UTF-8") from None
    try:
        doc: Any = yaml.load(text, Loader=_ChainLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ChainError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    from pipeline.kinematics._chain_yaml import (
        parse_chain,  # validation lives beside, to keep modules short
    )

    chain = parse_chain(doc, str(path))
    log.debug("loaded chain %s: %d bodies, %d imus", chain.name, chain.n_bodies, len(chain.imus))
    return chain
