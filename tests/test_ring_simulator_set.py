"""tools/ring_simulator_set.py's parts that need no RING: the chain's XML and the truth's
quaternion conventions (the set itself is made in RING's own venv, see the script)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pipeline.kinematics.chain import load_chain
from tests.conftest import REPO
from tools.ring_simulator_set import RingSetError, chain_xml, q_rel_from_rot

CHAINS = REPO / "configs" / "chains"


def _axis_angle(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) * np.array(axis))])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, av, bw, bv = a[0], a[1:], b[0], b[1:]
    return np.array([aw * bw - av @ bv, *(aw * bv + bw * av + np.cross(av, bv))])


def test_arm3_becomes_a_free_root_and_two_hinges_with_its_imus() -> None:
    xml, hinges = chain_xml(load_chain(CHAINS / "arm3.yaml"), ["seg1", "seg3"], 0.01)
    bodies = {b.get("name"): b for b in ET.fromstring(xml).iter("body")}
    assert [bodies[n].get("joint") for n in ("seg1", "seg2", "seg3")] == ["free", "ry", "rz"]
    assert bodies["seg2"].get("pos") == "0.2 0 0"
    assert bodies["imu_seg1"].get("joint") == "frozen"
    assert bodies["imu_seg3"] in list(bodies["seg3"])
    assert hinges["seg2"] == {"ring_type": "ry", "ring_limits": (-3.0, 3.0)}


def test_chains_ring_cannot_simulate_are_refused_with_the_field() -> None:
    with pytest.raises(RingSetError, match="joint.type"):
        chain_xml(load_chain(CHAINS / "lower_body.yaml"), ["pelvis"], 0.01)
    with pytest.raises(RingSetError, match="no IMU site 'wrist'"):
        chain_xml(load_chain(CHAINS / "arm3.yaml"), ["seg1", "wrist"], 0.01)


def test_truth_is_imuflows_body_to_parent_from_rings_earth_to_link_rotations() -> None:
    """RING's ``x.rot`` rotates earth vectors into the link frame and its hinge rotation is
    ``quat_rot_axis`` with the angle negated: a root tilted 30 deg about x carrying a child
    hinged +50 deg about y must come out as exactly those two rotations."""
    root = _axis_angle((1, 0, 0), math.radians(30))          # body to earth, imuflow
    hinge = _axis_angle((0, 1, 0), math.radians(50))         # child to root, imuflow
    ring_root = root * np.array([1, -1, -1, -1])             # earth to body
    ring_joint = _axis_angle((0, 1, 0), -math.radians(50))   # RING's joint rotation
    ring_child = _qmul(ring_joint, ring_root)                # RING's transform_mul order
    q_rel = q_rel_from_rot(np.stack([ring_root, ring_child])[None], np.array([-1, 0]))
    np.testing.assert_allclose(q_rel[0, 0], root, atol=1e-12)
    np.testing.assert_allclose(q_rel[0, 1], hinge, atol=1e-12)
