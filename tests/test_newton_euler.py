"""Newton-Euler inverse dynamics against Pinocchio's RNEA, and the floating-base residual."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.dynamics import InverseDynamics
from pipeline.kinematics.chain import Chain, JointType, load_chain
from pipeline.kinematics.fk import Kinematics
from pipeline.kinematics.inertia import ChainInertia, chain_inertia
from pipeline.kinematics.quaternion import np_qto_matrix

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"
TOL = 1e-9


def random_inertia(chain: Chain, rng: np.random.Generator) -> ChainInertia:
    """Physical random inertia per body: a few point masses around a random CoM."""
    n = chain.n_bodies
    mass, com, tensor = np.empty(n), rng.normal(0, 0.1, (n, 3)), np.empty((n, 3, 3))
    for i in range(n):
        m = rng.uniform(0.2, 5.0, 4)
        r = rng.normal(0, 0.08, (4, 3))
        r -= (m[:, None] * r).sum(0) / m.sum()
        mass[i] = m.sum()
        tensor[i] = sum(mk * (rk @ rk * np.eye(3) - np.outer(rk, rk)) for mk, rk in zip(m, r))
    return ChainInertia(mass, com, tensor)


def random_state(chain: Chain, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """q (nq,) with unit quaternions, qd (nqd,), qdd (nqd,)."""
    q = np.empty(chain.nq)
    for i, b in enumerate(chain.bodies):
        s, t = chain.q_start[i], b.joint.type
        if t == JointType.FREE:
            q[s:s + 3] = rng.normal(0, 0.5, 3)
            quat = rng.normal(size=4)
            q[s + 3:s + 7] = quat / np.linalg.norm(quat)
        elif t == JointType.SPHERICAL:
            quat = rng.normal(size=4)
            q[s:s + 4] = quat / np.linalg.norm(quat)
        elif t in (JointType.HINGE, JointType.PRISMATIC):
            q[s] = rng.uniform(-np.pi, np.pi)
    return q, rng.normal(0, 2.0, chain.nqd), rng.normal(0, 10.0, chain.nqd)


# ------------------------------------------------------------------------ Pinocchio reference
def _se3(pin, rot_wxyz, offset):
    return pin.SE3(np_qto_matrix(np.asarray(rot_wxyz, dtype=float)), np.asarray(offset, float))


def pin_model(chain: Chain, inertia: ChainInertia):
    """The chain as a Pinocchio model; frozen bodies are welded to their parent's joint."""
    pin = pytest.importorskip("pinocchio")
    model = pin.Model()
    where: dict[int, tuple[int, object]] = {}  # body -> (pin joint, body placement in it)
    for i, b in enumerate(chain.bodies):
        p = int(chain.parents[i])
        pj, pm = (0, pin.SE3.Identity()) if p < 0 else where[p]
        placement = pm * _se3(pin, b.joint.rotation, b.joint.offset)
        t = b.joint.type
        if t == JointType.FROZEN:
            where[i] = (pj, placement)
        else:
            jm = {JointType.FREE: lambda: pin.JointModelFreeFlyer(),
                  JointType.SPHERICAL: lambda: pin.JointModelSpherical(),
                  JointType.HINGE: lambda: pin.JointModelRevoluteUnaligned(*b.joint.axis),
                  JointType.PRISMATIC: lambda: pin.JointModelPrismaticUnaligned(*b.joint.axis),
                  }[t]()
            j = model.addJoint(pj, jm, placement, b.name)
            where[i] = (j, pin.SE3.Identity())
        j, m = where[i]
        model.appendBodyToJoint(j, m.act(pin.Inertia(inertia.mass[i], inertia.com[i],
                                                     inertia.tensor[i])), pin.SE3.Identity())
    return model, where


def pin_rnea(chain, inertia, q, qd, qdd, ext_body=(), ext=None):
    """Pinocchio's tau converted to our layout, and the root joint's wrench in the earth frame."""
    import pinocchio as pin

    model, where = pin_model(chain, inertia)
    data = model.createData()
    qp, vp, ap = [], [], []
    for i, b in enumerate(chain.bodies):
        s, d, t = chain.q_start[i], chain.qd_start[i], b.joint.type
        if t == JointType.FREE:  # our velocity: position rate in the joint frame; pin: local
            rq = np_qto_matrix(q[s + 3:s + 7])
            w = qd[d + 3:d + 6]
            v = rq.T @ qd[d:d + 3]
            qp += [*q[s:s + 3], *q[s + 4:s + 7], q[s + 3]]
            vp += [*v, *w]
            ap += [*(rq.T @ qdd[d:d + 3] - np.cross(w, v)), *qdd[d + 3:d + 6]]
        elif t == JointType.SPHERICAL:
            qp += [*q[s + 1:s + 4], q[s]]
            vp += list(qd[d:d + 3])
            ap += list(qdd[d:d + 3])
        elif t in (JointType.HINGE, JointType.PRISMATIC):
            qp.append(q[s])
            vp.append(qd[d])
            ap.append(qdd[d])
    qp, vp, ap = np.array(qp), np.array(vp), np.array(ap)
    pin.forwardKinematics(model, data, qp)
    fext = [pin.Force.Zero() for _ in range(model.njoints)]
    for k, b in enumerate(ext_body):
        j, m = where[b]
        rwb = (data.oMi[j] * m).rotation
        f = rwb.T @ ext[k, :3]
        mom = rwb.T @ ext[k, 3:6] + np.cross(ext[k, 6:9], f)
        fext[j] += m.act(pin.Force(f, mom))
    tau = pin.rnea(model, data, qp, vp, ap, fext)
    out = np.array(tau)
    for i, b in enumerate(chain.bodies):  # free root: force in the joint frame, like ours
        if b.joint.type == JointType.FREE:
            d, s = chain.qd_start[i], chain.q_start[i]
            out[d:d + 3] = np_qto_matrix(q[s + 3:s + 7]) @ out[d:d + 3]
    root_rot = data.oMi[1].rotation
    f1 = data.f[1]
    return out, np.concatenate([root_rot @ f1.linear, root_rot @ f1.angular])


@pytest.mark.parametrize("name", ["arm5", "arm3", "lower_body", "chain24"])
def test_matches_pinocchio_on_random_states(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    rng = np.random.default_rng(len(name))
    for trial in range(20):
        inertia = chain_inertia(chain) if trial == 0 and name != "arm3" else random_inertia(
            chain, rng)
        dyn = InverseDynamics(chain, inertia)
        q, qd, qdd = random_state(chain, rng)
        tau, residual = dyn.torques(q, qd, qdd)
        ref, ref_root = pin_rnea(chain, inertia, q, qd, qdd)
        np.testing.assert_allclose(tau, ref, rtol=0, atol=TOL)
        np.testing.assert_allclose(residual, ref_root, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["arm5", "chain24"])
def test_external_wrenches_match_pinocchio(name: str) -> None:
    chain = load_chain(CHAINS / f"{name}.yaml")
    bodies = ["link5", "link3"] if name == "arm5" else ["foot_l", "foot_r", "hand_r", "clavicle_l"]
    rng = np.random.default_rng(5)
    for _ in range(10):
        inertia = random_inertia(chain, rng)
        dyn = InverseDynamics(chain, inertia, external=bodies)
        q, qd, qdd = random_state(chain, rng)
        ext = rng.normal(0, 20.0, (len(bodies), 9))
        ext[:, 6:] = rng.normal(0, 0.2, (len(bodies), 3))
        tau, residual = dyn.torques(q, qd, qdd, ext)
        ref, ref_root = pin_rnea(chain, inertia, q, qd, qdd,
                                 [chain.index(b) for b in bodies], ext)
        np.testing.assert_allclose(tau, ref, rtol=0, atol=TOL)
        np.testing.assert_allclose(residual, ref_root, rtol=0, atol=TOL)


def test_residual_vanishes_for_consistent_external_forces() -> None:
    """The wrench the root needs, applied instead at a foot, leaves no residual."""
    chain = load_chain(CHAINS / "chain24.yaml")
    kin = Kinematics(chain)
    rng = np.random.default_rng(11)
    foot = chain.index("foot_l")
    for _ in range(20):
        q, qd, qdd = random_state(chain, rng)
        free = InverseDynamics(chain)
        tau0, need = free.torques(q, qd, qdd)
        assert np.abs(need).max() > 1.0
        pos, quat = kin.forward(q)
        r_foot = np_qto_matrix(quat[foot])
        point = r_foot.T @ (pos[0] - pos[foot])  # the root origin, foot frame
        ext = np.concatenate([need[:3], need[3:], point])[None]
        dyn = InverseDynamics(chain, external=["foot_l"])
        tau, residual = dyn.torques(q, qd, qdd, ext)
        assert np.abs(residual).max() < TOL
        np.testing.assert_allclose(tau[:6], 0.0, atol=TOL)  # the root's generalised force too


def test_free_fall_needs_no_force_and_batch_equals_frames() -> None:
    chain = load_chain(CHAINS / "lower_body.yaml")
    dyn = InverseDynamics(chain)
    rng = np.random.default_rng(3)
    q = random_state(chain, rng)[0]
    q[3:7] = [1, 0, 0, 0]  # root joint frame = earth frame: its linear qdd is in earth axes
    qdd = np.zeros(chain.nqd)
    qdd[:3] = dyn.gravity
    tau, residual = dyn.torques(q, np.zeros(chain.nqd), qdd)
    assert np.abs(tau).max() < TOL and np.abs(residual).max() < TOL
    states = [random_state(chain, rng) for _ in range(7)]
    qs, qds, qdds = (np.stack(x) for x in zip(*states))
    tb, rb = dyn.torques_batch(qs, qds, qdds)
    for k in range(7):
        t1, r1 = dyn.torques(qs[k], qds[k], qdds[k])
        np.testing.assert_array_equal(tb[k], t1)
        np.testing.assert_array_equal(rb[k], r1)


def test_static_arm_holds_its_weight() -> None:
    """Arm straight out along x: shoulder torque = -sum m x g (hand computation)."""
    chain = load_chain(CHAINS / "arm5.yaml")
    dyn = InverseDynamics(chain)
    q = np.array([0.0, np.pi / 2, 0, 0, 0])
    tau, residual = dyn.torques(q, np.zeros(5), np.zeros(5))
    m = dyn.inertia.mass
    x = np.array([0.20, 0.55, 0.76, 0.86])  # CoM distances from the shoulder, m
    assert tau[1] == pytest.approx(-(m[1:] @ x) * 9.81, abs=1e-9)
    assert residual[2] == pytest.approx(m.sum() * 9.81)
