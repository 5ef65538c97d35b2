"""Learned inverse dynamics: a tiny training run end to end, ONNX = PyTorch, node and hot swap."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodes.dynamics import Dynamics  # noqa: E402
from nodes.dynamics.learned import LearnedDynamics, load_dynamics_card  # noqa: E402
from pipeline.runtime.errors import ModelRejected  # noqa: E402
from pipeline.runtime.node import GraphContext  # noqa: E402
from tests.test_dynamics_node import ARM5, arm_states, feed  # noqa: E402
from tools import train_dynamics as td  # noqa: E402
from tools.dynamics_data import arm_data, friction, wave  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    td.ship(argparse.Namespace(out=str(out), name="tiny-dyn", samples=600, epochs=2,
                               episode_s=10.0, val_samples=300, heldout_samples=500))
    return out


def test_data_generator_has_the_unmodelled_effects() -> None:
    d = arm_data(1500, 3)
    assert d.x.shape == (1500, 15) and d.tau.shape == d.tau_rb.shape == (1500, 5)
    resid = d.tau - d.tau_rb
    assert np.all(np.sqrt(np.mean(resid ** 2, 0)) > 0.1)  # friction, springs, payload, push
    # the expected torque (mean payload, friction, springs) explains most of what rigid-body
    # misses; what is left is the per-phase payload and push, and the noise
    left = np.mean((d.tau - d.tau_mean) ** 2)
    assert 0.0025 < left < 0.7 * np.mean(resid ** 2)
    f = friction(np.array([[1e-3, -1e-3, 0.05, 1.0, -1.0]]))
    assert f[0, 0] > 0 > f[0, 1] and f[0, 3] > 0 > f[0, 4]
    x, y = wave("sawtooth", 300, 0.1, 0)
    assert x.shape == y.shape == (300, 1) and abs(float(np.std(x - y))) > 0.05


def test_tiny_training_run_exports_an_onnx_equal_to_pytorch(tiny_model: Path) -> None:
    card = json.loads((tiny_model / "tiny-dyn.json").read_text())
    assert card["schema"] == "imuflow.dynamics_card/1" and card["output"]["target"] == "residual"
    assert card["heldout"]["onnx_vs_torch_max_abs"] < 1e-4
    train = card["training"]
    assert 1 <= train["selected_epoch"] <= 2 and card["heldout"]["samples"] == 500
    loaded = load_dynamics_card(tiny_model / "tiny-dyn.onnx", (tiny_model,))
    m = LearnedDynamics(loaded)
    y = m.step(np.zeros(5), np.zeros(5), np.zeros(5))
    assert y.shape == (5,) and np.all(np.isfinite(y))


def test_node_runs_the_model_on_top_and_swaps(tiny_model: Path) -> None:
    chain, st, _, _, _, _ = arm_states(3.0)
    ctx = GraphContext(model_dirs=(tiny_model,))
    rigid = Dynamics.create("dynamics", chain=str(ARM5))
    base = feed(rigid, st, (4,))
    node = Dynamics.create("dynamics", context=ctx, chain=str(ARM5),
                           model=str(tiny_model / "tiny-dyn.onnx"))
    learned = feed(node, st, (4,))
    assert node.output_info("chain.torque").meta["model"] == "tiny-dyn"
    # offline: the same model over the node's own inputs, added to the rigid-body torques
    m = LearnedDynamics(load_dynamics_card(tiny_model / "tiny-dyn.onnx", (tiny_model,)))
    x = np.concatenate([learned["qd"][:, :0], _q_of(learned, base, st), learned["qd"],
                        learned["qdd"]], axis=1)
    np.testing.assert_allclose(learned["tau"], base["tau"] + m.run(x), rtol=1e-4, atol=1e-4)
    # swap back to rigid-body alone, then to the model again, between messages
    fut = node.on_command("swap", {"model": ""})
    node.on_block("state", _block(st[:1]))
    assert fut.result(5)["new"] == "rigid-body" and node.model is None
    fut = node.on_command("swap", {"model": str(tiny_model / "tiny-dyn.onnx")})
    reply = fut.result(5)
    assert reply["ok"] and reply["new"] == "tiny-dyn" and reply["warmup_frames"] > 0
    bad = tiny_model / "bad"
    bad.mkdir(exist_ok=True)
    shutil.copy(tiny_model / "tiny-dyn.onnx", bad / "tiny-dyn.onnx")
    (bad / "tiny-dyn.json").write_text((tiny_model / "tiny-dyn.json").read_text().replace(
        '"sha256": "', '"sha256": "00'))
    reply = node.on_command("swap", {"model": str(bad / "tiny-dyn.onnx")}).result(5)
    assert not reply["ok"] and "sha256" in reply["reason"]
    time.sleep(0.6)
    assert node.model is not None and node.model.card.name == "tiny-dyn"
    with pytest.raises(ModelRejected, match="outside the model folders"):
        Dynamics.create("dynamics", context=GraphContext(model_dirs=(REPO / "models",)),
                        chain=str(ARM5), model=str(tiny_model / "tiny-dyn.onnx"))


def _q_of(out, base, st):
    """Hinge angles of the frames the estimates belong to."""
    idx = np.searchsorted(st["t_host"], out["t_host"])
    return st["angle"][idx].astype(np.float64)


def _block(rows):
    from pipeline.runtime.message import StreamInfo
    from pipeline.runtime.streams import STATE
    from pipeline.runtime.testing import make_block

    return make_block(StreamInfo.for_array("sim/chain.state", STATE, rows.dtype, rate_hz=100.0),
                      rows)
