"""Chain YAML loader: shipped chains, helper arrays, and one expected message per bad file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.kinematics.chain import ChainError, JointType, load_chain

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"

GOOD = """\
# test chain; units: m, rad
name: t
units: {length: m, angle: rad}
bodies:
  - name: a
    parent: null
    joint: {type: free}
    geometry: [{shape: box, size: [0.1, 0.2, 0.3], color: [1, 0, 0]}]
  - name: b
    parent: a
    joint: {type: hinge, axis: [0, 2, 0], offset: [0, 0, -0.4], limits: [-1, 1]}
  - name: c
    parent: b
    joint: {type: spherical, rotation: [1.0004, 0, 0, 0]}
  - name: d
    parent: c
    joint: {type: prismatic, axis: [0, 0, 1]}
  - name: e
    parent: a
    joint: {type: frozen}
imus:
  - {name: s1, body: b, position: [0, 0, -0.2]}
poses:
  crouch: {prompt: "crouch", joints: {a: [0, 0.5, 0], b: 0.3, c: [0, 0, 0.1]}}
"""


def write(tmp_path: Path, text: str, name: str = "knee.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name,n_bodies,nq,n_imu", [
    ("knee", 2, 8, 2), ("arm3", 3, 9, 2), ("lower_body", 7, 19, 7), ("chain24", 24, 52, 10)])
def test_shipped_chains_load(name: str, n_bodies: int, nq: int, n_imu: int) -> None:
    c = load_chain(CHAINS / f"{name}.yaml")
    assert (c.n_bodies, c.nq, len(c.imus)) == (n_bodies, nq, n_imu)
    assert c.parents.dtype == np.int64
    assert all(p < i for i, p in enumerate(c.parents))
    assert (CHAINS / f"{name}.yaml").read_text().startswith("#")


def test_arm3_matches_reference_problem() -> None:
    c = load_chain(CHAINS / "arm3.yaml")
    assert c.body_names == ("seg1", "seg2", "seg3")
    assert list(c.joint_types) == [JointType.FREE, JointType.HINGE, JointType.HINGE]
    np.testing.assert_allclose(c.axes[1:], [[0, 1, 0], [0, 0, 1]])
    assert [s.body for s in c.imus] == ["seg1", "seg3"]
    np.testing.assert_allclose(c.imu_rotations, [[1, 0, 0, 0]] * 2)
    assert all(hi - lo > 1.8 * math.pi for lo, hi in c.limits[1:])


def test_helpers_and_normalisation(tmp_path: Path) -> None:
    c = load_chain(write(tmp_path, GOOD))
    assert c.index("c") == 2 and c.n_bodies == 5
    assert list(c.parents) == [-1, 0, 1, 2, 0]
    assert list(c.joint_types) == [0, 2, 1, 3, 4]
    assert list(c.q_start) == [0, 7, 8, 12, 13] and c.nq == 13 and c.nqd == 11
    assert list(c.qd_start) == [0, 6, 7, 10, 11]
    np.testing.assert_allclose(c.axes[1], [0, 1, 0])          # normalised
    np.testing.assert_allclose(c.rotations[2], [1, 0, 0, 0])  # near-unit normalised
    np.testing.assert_allclose(c.offsets[1], [0, 0, -0.4])
    assert list(c.imu_bodies) == [1] and list(c.hinge_bodies) == [1]
    assert c.bodies[0].geometry[0].color == (1.0, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(c.q_zero(), [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    assert np.isnan(c.limits[0]).all() and tuple(c.limits[1]) == (-1.0, 1.0)
    with pytest.raises(KeyError, match="no body 'zz'"):
        c.index("zz")


def test_children_listed_before_parents_are_reordered(tmp_path: Path) -> None:
    text = """bodies:
  - {name: child, parent: root, joint: {type: hinge, axis: [1, 0, 0]}}
  - {name: root, parent: null, joint: {type: free}}
"""
    c = load_chain(write(tmp_path, text))
    assert c.body_names == ("root", "child") and list(c.parents) == [-1, 0]


BAD = [
    ("joint: {type: hinge, axis: [0, 2, 0], offset: [0, 0, -0.4], limits: [-1, 1]}",
     "joint: {type: hinge, axis: [1, 0], offset: [0, 0, -0.4]}",
     "knee.yaml: body 'b': joint.axis must be 3 numbers, got [1, 0]"),
    ("axis: [0, 2, 0]", "axis: [0, 0, 0]", "body 'b': joint.axis must be a non-zero direction"),
    ("type: hinge, axis", "type: hing, axis", "body 'b': joint.type must be one of"),
    ("parent: a\n    joint: {type: hinge", "parent: nope\n    joint: {type: hinge",
     "body 'b': parent names an unknown body, got 'nope'"),
    ("  - name: e\n", "  - name: b\n", "body 'b': name is used by more than one body"),
    ("rotation: [1.0004, 0, 0, 0]", "rotation: [0, 0, 0, 0]",
     "body 'c': joint.rotation must be a unit quaternion w, x, y, z; it is zero"),
    ("rotation: [1.0004, 0, 0, 0]", "rotation: [2, 0, 0, 0]", "its norm is 2"),
    ("type: frozen}", "type: frozen, colour: red}", "body 'e': joint has unknown key(s) ['colour']"),
    ("  - name: e\n    parent: a\n", "  - name: e\n    parent: a\n    mass: 3\n",
     "body 'e': bodies[4] has unknown key(s) ['mass']"),
    ("limits: [-1, 1]", "limits: [1, -1]", "joint.limits must be [lower, upper] with lower < upper"),
    ("joint: {type: free}", "joint: {type: free, axis: [0, 0, 1]}",
     "joint.axis is only valid for hinge and prismatic joints"),
    ("size: [0.1, 0.2, 0.3]", "size: [0.1, -0.2, 0.3]", "geometry[0].size must be a positive number"),
    ("shape: box", "shape: cone", "geometry[0].shape must be one of"),
    ("units: {length: m, angle: rad}", "units: {length: mm, angle: deg}", "units must be"),
    ("{name: s1, body: b,", "{name: s1, body: q,", "imu 's1': body names an unknown body, got 'q'"),
    ("type: prismatic, axis: [0, 0, 1]", "type: prismatic", "body 'd': joint.axis is required"),
    ("b: 0.3", "b: [0.3]", "poses.crouch.joints.b must be the hinge angle in rad"),
    ("a: [0, 0.5, 0]", "a: [0, 0.5]", "poses.crouch.joints.a must be 3 numbers"),
    ("b: 0.3,", "d: 0.3,", "poses.crouch.joints.d names a prismatic joint"),
    ("c: [0, 0, 0.1]", "z: [0, 0, 0.1]", "poses.crouch.joints has unknown key(s) ['z']"),
    ("crouch: {", "neutral: {", "poses.neutral needs another name"),
    ('prompt: "crouch"', 'promt: "crouch"', "poses.crouch has unknown key(s) ['promt']"),
]


@pytest.mark.parametrize("old,new,message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_chain_files(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD, "test case must modify the good file"
    with pytest.raises(ChainError) as ei:
        load_chain(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(ei.value)
    assert "knee.yaml" in str(ei.value)


def test_still_poses_are_read(tmp_path: Path) -> None:
    """A chain's still poses other than the neutral one, for calibration (still_pose.py)."""
    (pose,) = load_chain(write(tmp_path, GOOD)).poses
    assert pose.name == "crouch" and pose.prompt == "crouch"
    assert dict(pose.joints) == {"a": (0.0, 0.5, 0.0), "b": (0.3,), "c": (0.0, 0.0, 0.1)}
    (sitting,) = load_chain(CHAINS / "knee.yaml").poses
    assert sitting.name == "sitting" and "thigh level" in sitting.prompt


def test_cycle_is_reported(tmp_path: Path) -> None:
    text = """bodies:
  - {name: r, parent: null, joint: {type: free}}
  - {name: x, parent: y, joint: {type: frozen}}
  - {name: y, parent: x, joint: {type: frozen}}
"""
    with pytest.raises(ChainError, match=r"parent forms a cycle \(x -> y -> x\)"):
        load_chain(write(tmp_path, text))


def test_chain_error_is_value_error_and_missing_file(tmp_path: Path) -> None:
    assert issubclass(ChainError, ValueError)
    with pytest.raises(ChainError, match="cannot read chain file"):
        load_chain(tmp_path / "missing.yaml")
    with pytest.raises(ChainError, match="bodies must be a non-empty list"):
        load_chain(write(tmp_path, "name: x\nbodies: []\n"))
