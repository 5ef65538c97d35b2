"""Hybrid observer models: the constraint prior as extra input, the same live and offline.

A hybrid (card ``input.prior: constraint``) gets, after the IMU signals, the joint state
the constraint estimators give without training (pipeline/estimation/constraint_prior.py)
and outputs a correction added to it. Checked here with real ONNX sessions: an untrained
hybrid (head at zero) returns the prior exactly; the live node (step and block mode) gives
what the offline evaluation gives; a card whose prior cannot run on the chain is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.observer import RnnObserver
from pipeline.estimation.constraint_prior import ConstraintPrior, prior_features
from pipeline.estimation.output_encoding import encode_outputs, output_width
from pipeline.evaluation.model_card import load_card, write_card
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate
from pipeline.kinematics.chain import load_chain
from pipeline.runtime.errors import ModelRejected
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import STATE, frame_dtype, frame_info
from pipeline.runtime.testing import make_block
from tools.training.data import generate
from tools.training.export import build_card, export_onnx
from tools.training.network import Observer
from tools.training.problem import get_problem, with_root_encoding

REPO = Path(__file__).resolve().parents[1]
ARM3 = REPO / "configs/chains/arm3.yaml"


@pytest.fixture(scope="module")
def arm3_data():
    return generate(get_problem("arm3-sparse"), [3_000_000, 3_000_001], 12.0, progress=False)


def _hybrid(folder: Path, trained: bool, prior: str = "constraint", root: str = "") -> Path:
    """A small hybrid arm3 model exported to ONNX with its card; random head when trained;
    ``root``: the root output's encoding ("" the problem's)."""
    problem = with_root_encoding(get_problem("arm3-sparse"), root)
    n_out = output_width(problem.outputs)
    torch.manual_seed(0)
    model = Observer(12 + n_out, n_out, hidden=16, layers=1, prior_at=12)
    if trained:  # stands in for a trained correction: small, non-zero
        torch.nn.init.normal_(model.head[2].weight, std=0.02)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "arm3-hybrid.onnx"
    export_onnx(model, onnx_path)
    card = build_card(model, problem, "arm3-hybrid", onnx_path, {}, {}, prior=prior)
    write_card(card, card.path)
    return onnx_path


def _live(onnx_path: Path, chain_file: Path, data, mode: str) -> tuple[RnnObserver, np.ndarray]:
    """The RNN observer node fed data's first sequence (one frame or 37 at a time): the node
    and the q_rel (T, n_bodies, 4) it published."""
    node = RnnObserver.create("obs", context=GraphContext(chain_file=chain_file,
                                                          model_dirs=(onnx_path.parent,)),
                              model=str(onnx_path), mode=mode)
    info = frame_info("filter/imu.frame", list(data.imus), data.rate_hz)
    t_ = data.imu.shape[1]
    frames = np.zeros(t_, frame_dtype(len(data.imus)))
    frames["t_host"] = np.round(np.arange(t_) * 1e9 / data.rate_hz).astype(np.int64)
    imu = data.imu[0].reshape(t_, len(data.imus), 6)
    frames["acc"], frames["gyr"] = imu[:, :, :3], imu[:, :, 3:]
    step = 1 if mode == "step" else 37
    for i in range(0, t_, step):
        node.on_block("frame", make_block(info, frames[i:i + step]))
    return node, np.concatenate([b.data["q_rel"] for b in node.emitted
                                 if b.info.kind == STATE])


def test_untrained_hybrid_returns_the_prior(tmp_path, arm3_data):
    model = OnnxObserverModel(_hybrid(tmp_path, trained=False))
    assert model.card.prior == "constraint" and model.card.n_features == 20
    chain = load_chain(ARM3)
    outputs = get_problem("arm3-sparse").outputs
    prior = prior_features(chain, ["seg1", "seg3"], 100.0, outputs, arm3_data.imu)
    x = np.concatenate([arm3_data.imu, prior], axis=-1)
    y, _ = model.run(x)
    np.testing.assert_allclose(y, prior, atol=1e-6)
    # the prior itself is a good estimate: angle errors of a few degrees, not tens
    result = evaluate(model, arm3_data, warmup_s=5.0)
    for body, stats in result.stats.items():
        assert stats.mean_deg < 8.0, (body, stats)


def test_prior_does_not_depend_on_block_size(arm3_data):
    chain = load_chain(ARM3)
    outputs = get_problem("arm3-sparse").outputs
    one = prior_features(chain, ["seg1", "seg3"], 100.0, outputs, arm3_data.imu[:1], block=1)
    big = prior_features(chain, ["seg1", "seg3"], 100.0, outputs, arm3_data.imu[:1], block=250)
    np.testing.assert_allclose(one, big, atol=1e-5)
    truth = encode_outputs(chain, outputs, arm3_data.q_rel[:1])
    assert np.abs(one - truth)[:, 500:].mean() < 0.1  # it estimates the state


@pytest.mark.parametrize("mode", ["step", "block"])
def test_live_node_gives_the_offline_numbers(tmp_path, arm3_data, mode):
    onnx_path = _hybrid(tmp_path, trained=True)
    offline = evaluate(OnnxObserverModel(onnx_path), arm3_data, warmup_s=5.0).q_rel[0]
    node, q = _live(onnx_path, ARM3, arm3_data, mode)
    # one-frame steps run the compiled GRU kernel, which adds the prior's input columns
    assert node.on_command("model", {})["step_engine"] == "compiled"
    for body in (1, 2):  # hinge bodies; the root is heading-free in both
        dots = np.abs(np.sum(q[:, body] * offline[:, body], axis=-1))
        assert dots.min() > 1 - 1e-5, (mode, body, dots.min())


@pytest.mark.parametrize("mode", ["step", "block"])
def test_up_vector_hybrid_live_and_offline(tmp_path, arm3_data, mode):
    """A hybrid whose root output is the vertical ("up") on the prior with the root's own
    VQF: untrained it returns the prior; live (step and block) gives the offline numbers, the
    root included; the root's prior differs from the shared-VQF one and the hinges' do not."""
    untrained = OnnxObserverModel(_hybrid(tmp_path / "u", False, "constraint-body-vqf-root2s",
                                          root="up"))
    assert [o.encoding for o in untrained.card.outputs] == ["up", "sincos", "sincos"]
    assert untrained.card.n_features == 12 + 7
    chain = load_chain(ARM3)
    outputs = [(o.body, o.encoding) for o in untrained.card.outputs]
    priors = {k: prior_features(chain, ["seg1", "seg3"], 100.0, outputs, arm3_data.imu, kind=k)
              for k in ("constraint-body-vqf", "constraint-body-vqf-root2s")}
    y, _ = untrained.run(np.concatenate([arm3_data.imu, priors["constraint-body-vqf-root2s"]],
                                        axis=-1))
    np.testing.assert_allclose(y, priors["constraint-body-vqf-root2s"], atol=1e-6)
    diff = np.abs(priors["constraint-body-vqf"] - priors["constraint-body-vqf-root2s"])
    assert diff[..., :3].max() > 1e-3 and diff[..., 3:].max() == 0.0
    onnx_path = _hybrid(tmp_path / "t", True, "constraint-body-vqf-root2s", root="up")
    offline = evaluate(OnnxObserverModel(onnx_path), arm3_data, warmup_s=5.0)
    assert offline.stats["seg1"].mean_deg < 8.0
    _, q = _live(onnx_path, ARM3, arm3_data, mode)
    for body in (0, 1, 2):
        dots = np.abs(np.sum(q[:, body] * offline.q_rel[0][:, body], axis=-1))
        assert dots.min() > 1 - 1e-5, (mode, body, dots.min())


@pytest.mark.parametrize("mode", ["step", "block"])
def test_joint_centre_prior_live_and_offline(tmp_path, mode):
    """A knee hybrid on the joint-centre prior: the card names it, offline evaluation and the
    live node compute it (not the quasi-static one), and walking tells the two apart."""
    problem = get_problem("knee-walk")
    data = generate(problem, [3_000_003], 20.0, progress=False)  # a walking sequence
    assert problem.gait_for(load_chain(REPO / problem.chain), 3_000_003, 20.0) is not None
    torch.manual_seed(0)
    model = Observer(12 + 2, 2, hidden=16, layers=1, prior_at=12)
    torch.nn.init.normal_(model.head[2].weight, std=0.02)
    onnx_path = tmp_path / "knee-jc.onnx"
    export_onnx(model, onnx_path)
    card = build_card(model, problem, "knee-jc", onnx_path, {}, {},
                      prior="constraint-joint-centre")
    write_card(card, card.path)
    knee = load_chain(REPO / "configs/chains/knee.yaml")
    priors = {k: prior_features(knee, ["thigh", "shank"], 100.0, problem.outputs, data.imu,
                                kind=k) for k in ("constraint", "constraint-joint-centre")}
    assert np.abs(priors["constraint"] - priors["constraint-joint-centre"]).max() > 0.05
    offline = evaluate(OnnxObserverModel(onnx_path), data, warmup_s=5.0).q_rel[0]
    _, q = _live(onnx_path, REPO / problem.chain, data, mode)
    dots = np.abs(np.sum(q[:, 1] * offline[:, 1], axis=-1))
    assert dots.min() > 1 - 1e-5, (mode, dots.min())


def test_an_unknown_prior_is_refused_by_name():
    knee = load_chain(REPO / "configs/chains/knee.yaml")
    with pytest.raises(ValueError, match="unknown prior 'magic'.*constraint-joint-centre"):
        ConstraintPrior(knee, ["thigh", "shank"], 100.0, [("shank", "sincos")], "magic")


def test_a_card_with_an_unknown_prior_is_refused(tmp_path):
    onnx_path = _hybrid(tmp_path, trained=False)
    card_file = onnx_path.with_suffix(".json")
    card_file.write_text(card_file.read_text().replace('"prior": "constraint"',
                                                       '"prior": "magic"'))
    with pytest.raises(ModelRejected, match="'prior' must be one of"):
        load_card(onnx_path)


def test_a_prior_without_the_imus_it_needs_names_them():
    knee = load_chain(REPO / "configs/chains/knee.yaml")
    with pytest.raises(ValueError, match="chain IMU 'shank' is not in the input frames"):
        ConstraintPrior(knee, ["thigh"], 100.0, [("shank", "sincos")])


def test_output_encoding_kernel_equals_the_numpy_formulas():
    """encode_outputs (numba, one frame at a time in the live prior) gives the numpy formulas'
    numbers: hinge angle from the joint-frame twist, heading-free root, w >= 0."""
    from pipeline.kinematics.fk import rel_to_hinge
    from pipeline.kinematics.quaternion import heading_free

    chain = load_chain(ARM3)
    outputs = [("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos"), ("seg3", "quat")]
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 300, 3, 4))
    q[0, 0] = 0.0  # zero quaternions: the identity
    q[0, 1, 0] = (0.0, 1.0, 0.0, 0.0)  # upside down: no twist part
    parts = []
    for body, enc in outputs:
        i = chain.index(body)
        if enc == "sincos":
            a = rel_to_hinge(q[..., i, :], chain.rotations[i], chain.axes[i])
            parts += [np.sin(a)[..., None], np.cos(a)[..., None]]
        elif i == 0:
            parts.append(heading_free(q[..., i, :]))
        else:
            parts.append(np.where(q[..., i, :1] < 0, -q[..., i, :], q[..., i, :]))
    expected = np.concatenate(parts, axis=-1).astype(np.float32)
    np.testing.assert_array_equal(encode_outputs(chain, outputs, q), expected)
    one = encode_outputs(chain, outputs, q[1, 7])
    np.testing.assert_array_equal(one, expected[1, 7])


def test_up_encoding_is_the_vertical_in_the_root_frame():
    """``up``: earth +z in the root's frame, continuous through upside down (where the
    heading-free quaternion jumps), and refused for a body that is not the root."""
    from pipeline.kinematics.quaternion import np_qnormalize, np_qto_matrix

    chain = load_chain(ARM3)
    rng = np.random.default_rng(1)
    q = np.tile([1.0, 0.0, 0.0, 0.0], (400, 3, 1))
    q[:, 0] = np_qnormalize(rng.normal(size=(400, 4)))
    up = encode_outputs(chain, [("seg1", "up")], q)
    np.testing.assert_allclose(up, np_qto_matrix(q[:, 0])[:, 2, :], atol=1e-6)
    # near upside down: tilted 179.9 deg about x, or about y: verticals 0.14 deg apart
    c, s_ = np.cos(np.radians(179.9) / 2), np.sin(np.radians(179.9) / 2)
    pair = np.tile([1.0, 0.0, 0.0, 0.0], (2, 3, 1))
    pair[0, 0], pair[1, 0] = (c, s_, 0.0, 0.0), (c, 0.0, s_, 0.0)
    u = encode_outputs(chain, [("seg1", "up")], pair)
    assert np.degrees(np.arccos(np.dot(u[0], u[1]))) < 0.15
    h = encode_outputs(chain, [("seg1", "quat")], pair)
    assert np.linalg.norm(h[0] - h[1]) > 1.0  # the heading-free quaternions are 90 deg apart
    with pytest.raises(ValueError, match="encoding 'up' is for the root 'seg1' only"):
        encode_outputs(chain, [("seg2", "up")], q)
