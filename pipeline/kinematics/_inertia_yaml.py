"""Validation of a chain body's ``inertia:`` and the chain's ``subject:`` (see inertia.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.kinematics.anthropometry import SEGMENTS
from pipeline.kinematics.inertia import BodyInertia, SegmentInertia, Subject, tensor_matrix

if TYPE_CHECKING:
    from pipeline.kinematics._chain_yaml import _Ctx

_EXPLICIT_KEYS = {"mass", "com", "tensor"}
_SEGMENT_KEYS = {"segment", "axis", "start", "length_m"}
_SUBJECT_KEYS = {"mass_kg", "height_m", "sex"}


def _number(ctx: _Ctx, key: str, v: Any, what: str, lo: float, lo_ok: bool) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < lo or (v == lo and not lo_ok):
        raise ctx.err(key, f"must be {what}", v)
    return float(v)


def parse_inertia(ctx: _Ctx, v: Any) -> BodyInertia | SegmentInertia:
    """A body's ``inertia:`` mapping: explicit (mass, com, tensor) or a de Leva segment."""
    from pipeline.kinematics._chain_yaml import _mapping, _numbers

    if isinstance(v, dict) and "segment" in v:
        v = _mapping(ctx, "inertia", v, _SEGMENT_KEYS)
        seg = v["segment"]
        if seg not in SEGMENTS:
            raise ctx.err("inertia.segment", f"must be one of {list(SEGMENTS)} (de Leva 1996)", seg)
        axis = _numbers(ctx, "inertia.axis", v.get("axis", [0, 0, -1]), 3)
        n = math.sqrt(sum(x * x for x in axis))
        if n < 1e-9:
            raise ctx.err("inertia.axis", "must be a non-zero direction (proximal to distal, "
                          "body frame)", list(axis))
        length = v.get("length_m")
        if length is not None:
            length = _number(ctx, "inertia.length_m", length, "a positive length in metres",
                             0.0, False)
        return SegmentInertia(seg, tuple(x / n for x in axis),  # type: ignore[arg-type]
                              _numbers(ctx, "inertia.start", v.get("start", [0, 0, 0]), 3),  # type: ignore[arg-type]
                              length)
    v = _mapping(ctx, "inertia", v, _EXPLICIT_KEYS)
    if "mass" not in v:
        raise ctx.err("inertia.mass", "is required (kg), or give segment: NAME for a human "
                      "segment", fix="e.g. inertia: {mass: 1.2, com: [0, 0, 0.1], "
                      "tensor: [0.01, 0.01, 0.002]}")
    mass = _number(ctx, "inertia.mass", v["mass"], "a mass in kg >= 0", 0.0, True)
    com = _numbers(ctx, "inertia.com", v.get("com", [0, 0, 0]), 3)
    raw = v.get("tensor", [0, 0, 0])
    if isinstance(raw, list) and len(raw) == 3:
        raw = [*raw, 0, 0, 0]
    if not isinstance(raw, list) or len(raw) != 6:
        raise ctx.err("inertia.tensor", "must be [Ixx, Iyy, Izz] or [Ixx, Iyy, Izz, Ixy, Ixz, "
                      "Iyz] in kg m^2 about the centre of mass", raw)
    t = _numbers(ctx, "inertia.tensor", raw, 6)
    eig = np.linalg.eigvalsh(tensor_matrix(t))
    tol = 1e-9 * max(1.0, float(np.abs(eig).max()))
    if eig[0] < -tol or eig[0] + eig[1] < eig[2] - tol:
        raise ctx.err("inertia.tensor", "is not a physical inertia tensor (principal moments "
                      f"{[round(float(e), 9) for e in eig]} must be >= 0 and each at most the "
                      "sum of the other two)", list(t))
    if mass == 0.0 and any(t):
        raise ctx.err("inertia.tensor", "must be zero for a massless body (mass: 0)", list(t))
    return BodyInertia(mass, com, t)  # type: ignore[arg-type]


def parse_subject(ctx: _Ctx, v: Any) -> Subject:
    """The chain's ``subject: {mass_kg, height_m, sex}``."""
    from pipeline.kinematics._chain_yaml import _mapping

    v = _mapping(ctx, "subject", v, _SUBJECT_KEYS)
    for k in ("mass_kg", "height_m"):
        if k not in v:
            raise ctx.err(f"subject.{k}", "is required", fix="e.g. subject: {mass_kg: 75, "
                          "height_m: 1.75, sex: male}")
    mass = _number(ctx, "subject.mass_kg", v["mass_kg"], "a body mass in kg > 0", 0.0, False)
    height = _number(ctx, "subject.height_m", v["height_m"], "a height in metres > 0", 0.0, False)
    sex = v.get("sex", "male")
    if sex not in ("male", "female"):
        raise ctx.err("subject.sex", "must be male or female (the de Leva table's columns)", sex)
    return Subject(mass, height, sex)
