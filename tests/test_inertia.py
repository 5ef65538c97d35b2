"""Segment inertia in chain YAML: explicit values, de Leva defaults, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.kinematics.anthropometry import DE_LEVA_1996, segment_inertia
from pipeline.kinematics.chain import ChainError, JointType, load_chain
from pipeline.kinematics.inertia import MissingInertia, Subject, chain_inertia

CHAINS = Path(__file__).resolve().parents[1] / "configs" / "chains"

TWO = """\
# two bodies
name: t
bodies:
  - name: a
    parent: null
    joint: {type: hinge, axis: [0, 0, 1]}
    inertia: INERTIA_A
  - name: b
    parent: a
    joint: {type: hinge, axis: [0, 1, 0], offset: [0, 0, 0.3]}
    inertia: {mass: 1.0, com: [0, 0, 0.1], tensor: [0.01, 0.01, 0.002, 0.001, 0, 0]}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("sex", ["male", "female"])
def test_de_leva_masses_add_up_to_the_body(sex: str) -> None:
    t = DE_LEVA_1996
    limbs = sum(t[s][sex].mass_frac for s in ("upper_arm", "forearm", "hand", "thigh", "shank",
                                              "foot"))
    whole = t["head"][sex].mass_frac + t["trunk"][sex].mass_frac + 2 * limbs
    split = sum(t[s][sex].mass_frac for s in ("upper_trunk", "mid_trunk", "lower_trunk"))
    assert whole == pytest.approx(1.0, abs=2e-4)
    assert split == pytest.approx(t["trunk"][sex].mass_frac, abs=2e-4)


def test_segment_scaled_by_subject() -> None:
    m, com, inertia = segment_inertia("thigh", "male", 80.0, 1.741 * 1.1, np.array([0, 0, -2.0]),
                                      np.zeros(3))
    length = 0.4222 * 1.1
    assert m == pytest.approx(0.1416 * 80)
    np.testing.assert_allclose(com, [0, 0, -0.4095 * length])
    np.testing.assert_allclose(np.diag(inertia), m * length ** 2 * np.array(
        [0.329 ** 2, 0.329 ** 2, 0.149 ** 2]))
    # a foot lying along x: longitudinal moment about x, medio-lateral about y
    _, com, inertia = segment_inertia("foot", "female", 60.0, 1.735, np.array([1.0, 0, 0]),
                                      np.array([-0.05, 0, 0]))
    k = 0.0129 * 60 * 0.2283 ** 2
    np.testing.assert_allclose(np.diag(inertia), k * np.array([0.139, 0.279, 0.299]) ** 2)
    np.testing.assert_allclose(com, [-0.05 + 0.4014 * 0.2283, 0, 0])


def test_shipped_chains_carry_inertia() -> None:
    arm = load_chain(CHAINS / "arm5.yaml")
    assert arm.n_bodies == 5 and all(t == JointType.HINGE for t in arm.joint_types)
    assert arm.parents[0] == -1
    ci = chain_inertia(arm)
    assert ci.total_mass == pytest.approx(7.2)
    for name, mass in (("knee", 75 * (0.1416 + 0.0433)), ("lower_body", None),
                       ("chain24", None)):
        chain = load_chain(CHAINS / f"{name}.yaml")
        ci = chain_inertia(chain)
        assert np.all(ci.mass >= 0) and np.all(np.linalg.eigvalsh(ci.tensor) >= -1e-12)
        if mass is not None:
            assert ci.total_mass == pytest.approx(mass)
    heavier = chain_inertia(load_chain(CHAINS / "knee.yaml"), Subject(90.0, 1.75))
    assert heavier.total_mass == pytest.approx(90 * (0.1416 + 0.0433))


def test_explicit_values_and_products(tmp_path: Path) -> None:
    chain = load_chain(_write(tmp_path, TWO.replace("INERTIA_A", "{mass: 2, tensor: [1, 1, 1]}")))
    ci = chain_inertia(chain)
    np.testing.assert_allclose(ci.tensor[1], [[0.01, 0.001, 0], [0.001, 0.01, 0], [0, 0, 0.002]])
    np.testing.assert_allclose(ci.com[1], [0, 0, 0.1])
    assert ci.mass.tolist() == [2.0, 1.0]


@pytest.mark.parametrize("inertia,message", [
    ("{mass: -1}", "body 'a': inertia.mass must be a mass in kg >= 0"),
    ("{com: [0, 0, 0]}", "body 'a': inertia.mass is required"),
    ("{mass: 1, tensor: [1, 1, 3]}", "body 'a': inertia.tensor is not a physical inertia tensor"),
    ("{mass: 1, tensor: [1, 1]}", "body 'a': inertia.tensor must be [Ixx, Iyy, Izz]"),
    ("{mass: 0, tensor: [1, 1, 1]}", "must be zero for a massless body"),
    ("{segment: femur}", "body 'a': inertia.segment must be one of"),
    ("{segment: thigh, axis: [0, 0, 0]}", "inertia.axis must be a non-zero direction"),
    ("{mass: 1, density: 3}", "body 'a': inertia has unknown key(s) ['density']"),
])
def test_bad_inertia_is_a_chain_error_naming_file_body_key(tmp_path: Path, inertia: str,
                                                           message: str) -> None:
    path = _write(tmp_path, TWO.replace("INERTIA_A", inertia))
    with pytest.raises(ChainError) as e:
        load_chain(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_missing_inertia_and_missing_subject(tmp_path: Path) -> None:
    chain = load_chain(CHAINS / "arm3.yaml")
    with pytest.raises(MissingInertia) as e:
        chain_inertia(chain)
    assert e.value.file.endswith("arm3.yaml") and e.value.key == "body 'seg1' inertia"
    assert "has no inertia" in str(e.value)
    path = _write(tmp_path, TWO.replace("INERTIA_A", "{segment: thigh}"))
    with pytest.raises(MissingInertia) as e:
        chain_inertia(load_chain(path))
    assert e.value.key == "subject" and "subject: {mass_kg: 75" in str(e.value)
    ok = chain_inertia(load_chain(path), Subject(70.0, 1.70, "female"))
    assert ok.mass[0] == pytest.approx(0.1478 * 70)
    text = TWO.replace("INERTIA_A", "{segment: thigh}").replace(
        "bodies:", "subject: {mass_kg: 70, height_m: 1.7, sex: other}\nbodies:")
    with pytest.raises(ChainError, match="subject.sex must be male or female"):
        load_chain(_write(tmp_path, text))
