"""Quaternion kernels, forward kinematics and meshes against plain numpy references."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.kinematics import quaternion as Q
from pipeline.kinematics.chain import Chain, JointType, load_chain
from pipeline.kinematics.fk import Kinematics, hinge_to_rel, rel_to_hinge
from pipeline.kinematics.mesh import build_mesh, vertices_to_world_into

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"
finite = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.tuples(finite, finite, finite).map(np.array)
quat_raw = st.tuples(finite, finite, finite, finite).filter(
    lambda q: sum(x * x for x in q) > 1e-3).map(np.array)
unit_quat = quat_raw.map(lambda q: q / np.linalg.norm(q))
angle = st.floats(-math.pi + 1e-6, math.pi - 1e-6)


@settings(max_examples=60, deadline=None)
@given(unit_quat, unit_quat, vec3)
def test_numba_quaternions_equal_numpy_twins(a: np.ndarray, b: np.ndarray, v: np.ndarray) -> None:
    np.testing.assert_allclose(Q.qmul(a, b), Q.np_qmul(a, b), atol=1e-12)
    np.testing.assert_allclose(Q.qconj(a), Q.np_qconj(a), atol=0)
    np.testing.assert_allclose(Q.qrotate(a, v), Q.np_qrotate(a, v), atol=1e-12)
    np.testing.assert_allclose(Q.qto_matrix(a), Q.np_qto_matrix(a), atol=1e-12)
    np.testing.assert_allclose(Q.qto_matrix(a) @ v, Q.np_qrotate(a, v), atol=1e-12)
    np.testing.assert_allclose(Q.qnormalize(a * 3.0), Q.np_qnormalize(a * 3.0), atol=1e-12)
    assert Q.qangle(a, b) == pytest.approx(float(Q.np_qangle(a, b)), abs=1e-7)
    np.testing.assert_allclose(Q.qintegrate(a, v, 0.01), Q.np_qintegrate(a, v, 0.01), atol=1e-12)
    np.testing.assert_allclose(Q.qfrom_rotvec(v), Q.np_qfrom_rotvec(v), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(unit_quat, unit_quat, vec3)
def test_unit_quaternion_properties(a: np.ndarray, b: np.ndarray, v: np.ndarray) -> None:
    ab = Q.qmul(a, b)
    assert np.linalg.norm(ab) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.norm(Q.qrotate(a, v)) == pytest.approx(np.linalg.norm(v), abs=1e-12)
    m = Q.qto_matrix(a)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-12)
    # (a b) v == a (b v); conj undoes
    np.testing.assert_allclose(Q.qrotate(ab, v), Q.qrotate(a, Q.qrotate(b, v)), atol=1e-12)
    np.testing.assert_allclose(Q.qrotate(Q.qconj(a), Q.qrotate(a, v)), v, atol=1e-12)
    assert Q.qangle(a, ab) == pytest.approx(Q.qangle(np.array([1.0, 0, 0, 0]), b), abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(angle, unit_quat, vec3.filter(lambda v: np.linalg.norm(v) > 1e-2))
def test_hinge_angle_round_trip(theta: float, rot: np.ndarray, axis: np.ndarray) -> None:
    axis = axis / np.linalg.norm(axis)
    q_rel = hinge_to_rel(theta, rot, axis)
    assert np.linalg.norm(q_rel) == pytest.approx(1.0, abs=1e-12)
    assert float(rel_to_hinge(q_rel, rot, axis)) == pytest.approx(theta, abs=1e-9)
    # numba quaternion from axis-angle agrees with the joint part of the relative rotation
    np.testing.assert_allclose(Q.qmul(rot, Q.qfrom_axis_angle(axis, theta)), q_rel, atol=1e-12)


def test_hinge_angle_wraps_into_minus_pi_pi() -> None:
    rot, axis = np.array([1.0, 0, 0, 0]), np.array([0.0, 0, 1])
    rel = hinge_to_rel(np.array([3 * math.pi / 2, -3 * math.pi / 2]), rot, axis)
    got = rel_to_hinge(rel, rot, axis)
    np.testing.assert_allclose(got, [-math.pi / 2, math.pi / 2], atol=1e-12)


def reference_fk(chain: Chain, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy forward kinematics straight from the documented conventions."""
    pos, quat = np.zeros((chain.n_bodies, 3)), np.zeros((chain.n_bodies, 4))
    for i, body in enumerate(chain.bodies):
        j, s = body.joint, chain.q_start[i]
        r, o = np.array(j.rotation), np.array(j.offset)
        if j.type == JointType.FREE:
            p_rel, q_rel = o + Q.np_qrotate(r, q[s:s + 3]), Q.np_qmul(r, q[s + 3:s + 7])
        elif j.type == JointType.SPHERICAL:
            p_rel, q_rel = o, Q.np_qmul(r, q[s:s + 4])
        elif j.type == JointType.HINGE:
            p_rel, q_rel = o, Q.np_qmul(r, Q.np_qfrom_axis_angle(np.array(j.axis), q[s]))
        elif j.type == JointType.PRISMATIC:
            p_rel, q_rel = o + Q.np_qrotate(r, np.array(j.axis) * q[s]), r
        else:
            p_rel, q_rel = o, r
        p = chain.parents[i]
        if p < 0:
            pos[i], quat[i] = p_rel, q_rel
        else:
            pos[i] = pos[p] + Q.np_qrotate(quat[p], p_rel)
            quat[i] = Q.np_qmul(quat[p], q_rel)
    return pos, quat


def random_q(chain: Chain, rng: np.random.Generator) -> np.ndarray:
    q = rng.uniform(-2.0, 2.0, chain.nq)
    for i, jt in enumerate(chain.joint_types):
        s = chain.q_start[i]
        if jt == JointType.FREE:
            q[s + 3:s + 7] /= np.linalg.norm(q[s + 3:s + 7])
        elif jt == JointType.SPHERICAL:
            q[s:s + 4] /= np.linalg.norm(q[s:s + 4])
    return q


@pytest.mark.parametrize("name", ["knee", "arm3", "lower_body", "chain24"])
def test_fk_equals_numpy_reference(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    kin = Kinematics(chain)
    rng = np.random.default_rng(3)
    qs = np.stack([random_q(chain, rng) for _ in range(20)])
    pos, quat = kin.forward_batch(qs)
    for k in range(len(qs)):
        rp, rq = reference_fk(chain, qs[k])
        np.testing.assert_allclose(pos[k], rp, atol=1e-12)
        np.testing.assert_allclose(quat[k], rq, atol=1e-12)
    # single-frame out= variant writes into the given arrays
    out = (np.zeros((chain.n_bodies, 3)), np.zeros((chain.n_bodies, 4)))
    res = kin.forward(qs[0], out=out)
    assert res[0] is out[0] and np.allclose(out[0], pos[0])
    # sites: body pose composed with site offset
    spos, squat = kin.sites(pos, quat)
    b = chain.imu_bodies
    np.testing.assert_allclose(spos, pos[:, b] + Q.np_qrotate(quat[:, b], chain.imu_positions),
                               atol=1e-12)
    np.testing.assert_allclose(squat, Q.np_qmul(quat[:, b], chain.imu_rotations), atol=1e-12)
    one_pos, one_quat = kin.sites(pos[3], quat[3])  # single frame
    np.testing.assert_allclose(one_pos, spos[3], atol=0)
    np.testing.assert_allclose(one_quat, squat[3], atol=0)


def test_fk_arm3_known_pose() -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    q = chain.q_zero()
    q[7], q[8] = math.pi / 2, math.pi / 2  # seg2 about seg1 y, seg3 about seg2 z
    pos, quat = Kinematics(chain).forward(q)
    np.testing.assert_allclose(pos[0], [0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(pos[1], [0.2, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(pos[2], [0.2, 0, 0.8], atol=1e-12)  # x rotated about y to -z
    # seg3's x axis: rotated about seg2's z (->y of seg2), seg2's y is world y
    np.testing.assert_allclose(Q.np_qrotate(quat[2], [1.0, 0, 0]), [0, 1, 0], atol=1e-12)


def test_relative_and_compose_round_trip() -> None:
    chain = load_chain(CHAINS / "lower_body.yaml")
    kin = Kinematics(chain)
    rng = np.random.default_rng(5)
    qs = np.stack([random_q(chain, rng) for _ in range(10)])
    pos, quat = kin.forward_batch(qs)
    p_rel, q_rel = kin.relative_batch(qs)
    pos2, quat2 = kin.forward_rel(q_rel, p_rel[:, 0])
    np.testing.assert_allclose(pos2, pos, atol=1e-12)
    np.testing.assert_allclose(quat2, quat, atol=1e-12)
    pos1, quat1 = kin.forward_rel(q_rel[4], p_rel[4, 0])  # single frame
    np.testing.assert_allclose(pos1, pos[4], atol=1e-12)
    np.testing.assert_allclose(quat1, quat[4], atol=1e-12)
    hinge_q = qs[:, chain.q_start[chain.hinge_bodies]]
    np.testing.assert_allclose(kin.hinge_angles(q_rel), (hinge_q + np.pi) % (2 * np.pi) - np.pi,
                               atol=1e-9)


_ALLOC_CHECK = """
import numpy as np
from numba.core.runtime import rtsys
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import Kinematics, fk_q_batch, fk_q_into
kin = Kinematics(load_chain({chain!r}))
n, nq = kin.ints.shape[0], kin.chain.nq
pos, quat = np.empty((n, 3)), np.empty((n, 4))
fk_q_into(kin.ints, kin.params, np.zeros(nq), pos, quat)  # loads the runtime, compiles
fk_q_batch(kin.ints, kin.params, np.zeros((1, nq)), pos[None], quat[None])
def allocations(frames):  # NRT allocations by one compiled call over `frames` frames
    q = np.zeros((frames, nq))
    pos, quat = np.empty((frames, n, 3)), np.empty((frames, n, 4))
    before = rtsys.get_allocation_stats().alloc
    fk_q_batch(kin.ints, kin.params, q, pos, quat)
    return rtsys.get_allocation_stats().alloc - before
print(allocations(1), allocations(200))
"""


def test_fk_kernel_does_not_allocate_per_call() -> None:
    """Counted by numba's runtime (NRT) statistics, which must be switched on before numba is
    imported: fk_q_batch calls fk_q_into per frame in compiled code, so a kernel that
    allocates per body or per frame makes 200 frames cost more than one (the call from Python
    itself allocates a few times, for boxing its array arguments)."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    proc = subprocess.run([sys.executable, "-c", _ALLOC_CHECK.format(
        chain=str(CHAINS / "chain24.yaml"))], capture_output=True, text=True, env=env,
        cwd=CHAINS.parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr
    one, many = map(int, proc.stdout.split())
    assert many == one  # the compiled kernel allocates nothing per frame or body


@pytest.mark.parametrize("name", ["knee", "arm3", "chain24"])
def test_mesh_build_and_world_transform(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    mesh = build_mesh(chain)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.uint32
    assert mesh.colors.shape == (len(mesh.vertices), 4)
    assert mesh.faces.max() < len(mesh.vertices)
    assert mesh.body_start[-1] == len(mesh.vertices) and len(mesh.body_start) == chain.n_bodies + 1
    kin = Kinematics(chain)
    pos, quat = kin.forward(random_q(chain, np.random.default_rng(2)))
    out = np.empty_like(mesh.vertices)
    vertices_to_world_into(mesh.vertices, mesh.body_start, pos, quat, out)
    body = np.repeat(np.arange(chain.n_bodies), np.diff(mesh.body_start))
    ref = pos[body] + Q.np_qrotate(quat[body], mesh.vertices.astype(np.float64))
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_mesh_shapes_have_their_size_and_face_outwards() -> None:
    chain = load_chain(CHAINS / "knee.yaml")
    mesh = build_mesh(chain, segments=32)
    thigh = mesh.vertices[mesh.body_start[0]:mesh.body_start[1]].astype(np.float64)
    # capsule r=0.065, length 0.33 centred at z=-0.225: spans z in [-0.225-0.23, -0.225+0.23]
    assert thigh[:, 2].min() == pytest.approx(-0.225 - 0.165 - 0.065, abs=1e-6)
    assert np.abs(thigh[:, 0]).max() == pytest.approx(0.065, abs=1e-6)
    v, f = mesh.vertices.astype(np.float64), mesh.faces.astype(np.int64)
    signed_volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert signed_volume > 0.009  # counter-clockwise outward faces give a positive volume
