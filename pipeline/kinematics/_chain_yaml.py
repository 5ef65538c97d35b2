"""Validation of parsed chain YAML documents into Chain objects (used by pipeline.kinematics.chain.load_chain)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.kinematics._inertia_yaml import parse_inertia, parse_subject
from pipeline.kinematics.chain import (
    SHAPES,
    Body,
    Chain,
    ChainError,
    Geometry,
    ImuSite,
    Joint,
    JointType,
    StillPose,
)

_TOP_KEYS = {"name", "units", "bodies", "imus", "subject", "poses"}
_POSE_KEYS = {"prompt", "joints"}
_BODY_KEYS = {"name", "parent", "joint", "geometry", "inertia"}
_JOINT_KEYS = {"type", "offset", "rotation", "axis", "limits"}
_GEOM_COMMON = {"shape", "color", "offset", "rotation"}
_IMU_KEYS = {"name", "body", "position", "rotation"}
_UNITS = {"length": "m", "angle": "rad"}
_QUAT_TOL = 1e-3


class _Ctx:
    """Error context: file and (optionally) body or imu being parsed."""

    def __init__(self, file: str, where: str = "") -> None:
        self.file, self.where = file, where

    def err(self, key: str, msg: str, got: Any = None, fix: str = "") -> ChainError:
        where = f" {self.where}:" if self.where else ""
        text = f"{self.file}:{where} {key} {msg}"
        if got is not None:
            text += f", got {got!r}"
        if fix:
            text += f" ({fix})"
        return ChainError(text)


def _mapping(ctx: _Ctx, key: str, v: Any, allowed: set[str]) -> dict:
    if not isinstance(v, dict):
        raise ctx.err(key, "must be a mapping", v)
    unknown = sorted(set(map(str, v)) - allowed)
    if unknown:
        raise ctx.err(key, f"has unknown key(s) {unknown}", fix=f"allowed: {sorted(allowed)}")
    return v


def _numbers(ctx: _Ctx, key: str, v: Any, n: int) -> tuple[float, ...]:
    ok = (isinstance(v, (list, tuple)) and len(v) == n
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
    if not ok or not all(math.isfinite(x) for x in v):
        raise ctx.err(key, f"must be {n} numbers", v if not isinstance(v, tuple) else list(v))
    return tuple(float(x) for x in v)


def _positive(ctx: _Ctx, key: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and math.isfinite(v)):
        raise ctx.err(key, "must be a positive number in metres", v)
    return float(v)


def _quat(ctx: _Ctx, key: str, v: Any) -> tuple[float, float, float, float]:
    q = _numbers(ctx, key, v, 4)
    norm = math.sqrt(sum(x * x for x in q))
    if norm == 0.0:
        raise ctx.err(key, "must be a unit quaternion w, x, y, z; it is zero", list(q),
                      "use [1, 0, 0, 0] for no rotation")
    if abs(norm - 1.0) > _QUAT_TOL:
        raise ctx.err(key, f"must be a unit quaternion w, x, y, z; its norm is {norm:.6g}", list(q),
                      "give w, x, y, z with w^2 + x^2 + y^2 + z^2 = 1")
    return tuple(x / norm for x in q)  # type: ignore[return-value]


def _joint(ctx: _Ctx, v: Any) -> Joint:
    v = _mapping(ctx, "joint", v, _JOINT_KEYS)
    names = [t.name.lower() for t in JointType]
    jt = v.get("type")
    if jt not in names:
        raise ctx.err("joint.type", f"must be one of {names}", jt)
    jtype = JointType[jt.upper()]
    offset = _numbers(ctx, "joint.offset", v.get("offset", [0, 0, 0]), 3)
    rotation = _quat(ctx, "joint.rotation", v.get("rotation", [1, 0, 0, 0]))
    axis = (0.0, 0.0, 0.0)
    if jtype in (JointType.HINGE, JointType.PRISMATIC):
        if "axis" not in v:
            raise ctx.err("joint.axis", f"is required for a {jt} joint", fix="e.g. axis: [0, 1, 0]")
        a = _numbers(ctx, "joint.axis", v["axis"], 3)
        n = math.sqrt(sum(x * x for x in a))
        if n < 1e-9:
            raise ctx.err("joint.axis", "must be a non-zero direction", list(a), "e.g. [0, 1, 0]")
        axis = tuple(x / n for x in a)  # type: ignore[assignment]
    elif "axis" in v:
        raise ctx.err("joint.axis", f"is only valid for hinge and prismatic joints, not {jt}",
                      fix="remove it")
    limits = None
    if "limits" in v:
        if jtype in (JointType.FREE, JointType.FROZEN):
            raise ctx.err("joint.limits", f"are not supported for a {jt} joint", fix="remove them")
        lo, hi = _numbers(ctx, "joint.limits", v["limits"], 2)
        if not lo < hi:
            raise ctx.err("joint.limits", "must be [lower, upper] with lower < upper", [lo, hi])
        limits = (lo, hi)
    return Joint(jtype, offset, rotation, axis, limits)  # type: ignore[arg-type]


def _geometry(ctx: _Ctx, i: int, v: Any) -> Geometry:
    key = f"geometry[{i}]"
    if not isinstance(v, dict):
        raise ctx.err(key, "must be a mapping", v)
    shape = v.get("shape")
    if shape not in SHAPES:
        raise ctx.err(f"{key}.shape", f"must be one of {sorted(SHAPES)}", shape)
    dim_keys = SHAPES[shape]
    _mapping(ctx, key, v, _GEOM_COMMON | set(dim_keys))
    for k in dim_keys:
        if k not in v:
            raise ctx.err(f"{key}.{k}", f"is required for a {shape}", fix="metres")
    if shape == "box":
        dims = _numbers(ctx, f"{key}.size", v["size"], 3)
        for d in dims:
            _positive(ctx, f"{key}.size", d)
    else:
        dims = tuple(_positive(ctx, f"{key}.{k}", v[k]) for k in dim_keys)
    color = v.get("color", [0.7, 0.7, 0.7, 1.0])
    if isinstance(color, list) and len(color) == 3:
        color = [*color, 1.0]
    c = _numbers(ctx, f"{key}.color", color, 4)
    if not all(0.0 <= x <= 1.0 for x in c):
        raise ctx.err(f"{key}.color", "must be RGB or RGBA in 0..1", list(c))
    return Geometry(shape, dims, c,  # type: ignore[arg-type]
                    _numbers(ctx, f"{key}.offset", v.get("offset", [0, 0, 0]), 3),  # type: ignore[arg-type]
                    _quat(ctx, f"{key}.rotation", v.get("rotation", [1, 0, 0, 0])))


def _order(file: str, bodies: list[Body]) -> list[Body]:
    """Topological order (parents first), stable w.r.t. file order; detects cycles."""
    by_name = {b.name: b for b in bodies}
    done: dict[str, int] = {}
    out: list[Body] = []
    for b in bodies:
        path: list[str] = []
        cur: Body | None = b
        while cur is not None and cur.name not in done:
            if cur.name in path:
                cycle = " -> ".join(path[path.index(cur.name):] + [cur.name])
                raise ChainError(f"{file}: body '{cur.name}': parent forms a cycle ({cycle}); "
                                 "exactly one chain of parents must end at the earth (parent: null)")
            path.append(cur.name)
            cur = by_name[cur.parent] if cur.parent is not None else None
        for name in reversed(path):
            done[name] = len(out)
            out.append(by_name[name])
    return out


def parse_chain(doc: Any, file: str) -> Chain:
    """Validate a parsed YAML document and build a Chain; raises ChainError with context."""
    top = _Ctx(file)
    if not isinstance(doc, dict):
        raise top.err("document", "must be a mapping with a 'bodies' list", type(doc).__name__)
    _mapping(top, "top level", doc, _TOP_KEYS)
    if "units" in doc and doc["units"] != _UNITS:
        raise top.err("units", f"must be {_UNITS} (SI only)", doc["units"])
    raw_bodies = doc.get("bodies")
    if not isinstance(raw_bodies, list) or not raw_bodies:
        raise top.err("bodies", "must be a non-empty list of bodies", raw_bodies)
    bodies: list[Body] = []
    seen: set[str] = set()
    for i, rb in enumerate(raw_bodies):
        name = rb.get("name") if isinstance(rb, dict) else None
        if not isinstance(name, str) or not name:
            raise top.err(f"bodies[{i}].name", "must be a non-empty string", name)
        ctx = _Ctx(file, f"body '{name}'")
        _mapping(ctx, f"bodies[{i}]", rb, _BODY_KEYS)
        if name in seen:
            raise ctx.err("name", "is used by more than one body", fix="body names must be unique")
        seen.add(name)
        parent = rb.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise ctx.err("parent", "must be a body name or null (earth)", parent)
        if "joint" not in rb:
            raise ctx.err("joint", "is required", fix="e.g. joint: {type: hinge, axis: [0, 1, 0]}")
        joint = _joint(ctx, rb["joint"])
        geoms = rb.get("geometry", [])
        if not isinstance(geoms, list):
            raise ctx.err("geometry", "must be a list of shapes", geoms)
        inertia = parse_inertia(ctx, rb["inertia"]) if "inertia" in rb else None
        bodies.append(Body(name, parent, joint,
                           tuple(_geometry(ctx, k, g) for k, g in enumerate(geoms)), inertia))
    for b in bodies:
        if b.parent is not None and b.parent not in seen:
            raise _Ctx(file, f"body '{b.name}'").err(
                "parent", "names an unknown body", b.parent, f"known bodies: {sorted(seen)}, or null for earth")
    ordered = _order(file, bodies)
    imus: list[ImuSite] = []
    raw_imus = doc.get("imus", [])
    if not isinstance(raw_imus, list):
        raise top.err("imus", "must be a list of IMU sites", raw_imus)
    imu_names: set[str] = set()
    for i, ri in enumerate(raw_imus):
        name = ri.get("name") if isinstance(ri, dict) else None
        if not isinstance(name, str) or not name:
            raise top.err(f"imus[{i}].name", "must be a non-empty string", name)
        ctx = _Ctx(file, f"imu '{name}'")
        _mapping(ctx, f"imus[{i}]", ri, _IMU_KEYS)
        if name in imu_names:
            raise ctx.err("name", "is used by more than one IMU", fix="IMU names must be unique")
        imu_names.add(name)
        body = ri.get("body")
        if body not in seen:
            raise ctx.err("body", "names an unknown body", body, f"known bodies: {sorted(seen)}")
        imus.append(ImuSite(name, body,
                            _numbers(ctx, "position", ri.get("position", [0, 0, 0]), 3),  # type: ignore[arg-type]
                            _quat(ctx, "rotation", ri.get("rotation", [1, 0, 0, 0]))))
    name = doc.get("name", file.rsplit("/", 1)[-1].removesuffix(".yaml"))
    if not isinstance(name, str):
        raise top.err("name", "must be a string", name)
    subject = parse_subject(top, doc["subject"]) if "subject" in doc else None
    poses = _poses(top, doc.get("poses", {}), {b.name: b.joint.type for b in ordered})
    return Chain(name, tuple(ordered), tuple(imus), file, subject, poses)


def _poses(ctx: _Ctx, v: Any, joint_types: dict[str, JointType]) -> tuple[StillPose, ...]:
    """``poses: {NAME: {prompt: TEXT, joints: {BODY: angle | [rx, ry, rz]}}}``."""
    if not isinstance(v, dict):
        raise ctx.err("poses", "must be a mapping of pose names", v)
    poses = []
    for name, raw in v.items():
        key = f"poses.{name}"
        if not isinstance(name, str) or name == "neutral":
            raise ctx.err(key, "needs another name: 'neutral' is every joint at zero", name)
        _mapping(ctx, key, raw, _POSE_KEYS)
        prompt = raw.get("prompt", "")
        if not isinstance(prompt, str):
            raise ctx.err(f"{key}.prompt", "must be a string", prompt)
        joints = []
        for body, value in _mapping(ctx, f"{key}.joints", raw.get("joints"),
                                    set(joint_types)).items():
            kind = joint_types[body]
            where = f"{key}.joints.{body}"
            if kind == JointType.HINGE:
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise ctx.err(where, "must be the hinge angle in rad", value)
                joints.append((body, (float(value),)))
            elif kind in (JointType.FREE, JointType.SPHERICAL):
                joints.append((body, _numbers(ctx, where, value, 3)))
            else:
                raise ctx.err(where, f"names a {kind.name.lower()} joint",
                              fix="poses set hinge angles and free or spherical rotations")
        poses.append(StillPose(name, tuple(joints), prompt))
    return tuple(poses)
