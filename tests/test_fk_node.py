"""ForwardKinematics node: a state sample takes the root orientation of its own frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nodes.fk import ROOTS_KEPT, ForwardKinematics
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import ROOT, ROOT_DTYPE, STATE, state_dtype
from pipeline.runtime.testing import make_block

CHAIN = Path(__file__).resolve().parents[1] / "configs" / "chains" / "knee.yaml"
STATE_INFO = StreamInfo.for_array("observer/chain.state", STATE, state_dtype(2, 1), rate_hz=100.0)
ROOT_INFO = StreamInfo.for_array("orientation/root.orientation", ROOT, ROOT_DTYPE, rate_hz=100.0)


def _root(t: list[int], angle_deg: list[float]) -> np.ndarray:
    """Root samples: rotations about z by ``angle_deg`` at host times ``t`` (ns)."""
    out = np.zeros(len(t), ROOT_DTYPE)
    out["t_host"] = t
    half = np.radians(angle_deg) / 2
    out["q"] = np.stack([np.cos(half), 0 * half, 0 * half, np.sin(half)], axis=1)
    return out


def _state(t: list[int]) -> np.ndarray:
    out = np.zeros(len(t), state_dtype(2, 1))
    out["t_host"] = t
    out["q_rel"][:, :, 0] = 1.0
    return out


def _root_quats(node: ForwardKinematics, t: list[int]) -> np.ndarray:
    node.on_block("state", make_block(STATE_INFO, _state(t), t_host=t[0]))
    return node.emitted[-1].data["quat"][:, 0]


def test_each_state_sample_takes_the_root_of_its_own_frame():
    node = ForwardKinematics.create("fk", context=GraphContext(chain_file=CHAIN))
    node.on_block("root", make_block(ROOT_INFO, _root([10, 20], [10.0, 20.0]), t_host=10))
    node.on_block("root", make_block(ROOT_INFO, _root([30], [30.0]), t_host=30))
    np.testing.assert_allclose(_root_quats(node, [10]), _root([10], [10.0])["q"], atol=1e-6)
    np.testing.assert_allclose(_root_quats(node, [20, 30]), _root([20, 30], [20.0, 30.0])["q"],
                               atol=1e-6)
    # a frame whose root has not come (or was dropped): the newest root
    np.testing.assert_allclose(_root_quats(node, [40]), _root([30], [30.0])["q"], atol=1e-6)


def test_old_roots_are_forgotten_but_a_whole_block_is_kept():
    node = ForwardKinematics.create("fk", context=GraphContext(chain_file=CHAIN))
    n = ROOTS_KEPT + 100
    t = list(range(1, n + 1))
    angles = list(np.linspace(0.0, 90.0, n))
    node.on_block("root", make_block(ROOT_INFO, _root(t, angles), t_host=1))
    # one block is kept whole, so a state block of the same frames pairs sample by sample
    np.testing.assert_allclose(_root_quats(node, t), _root(t, angles)["q"], atol=1e-6)
    node.on_block("root", make_block(ROOT_INFO, _root([n + 1], [5.0]), t_host=n + 1))
    newest = _root([n + 1], [5.0])["q"]
    np.testing.assert_allclose(_root_quats(node, [1]), newest, atol=1e-6)  # forgotten
    np.testing.assert_allclose(_root_quats(node, [n]), _root([n], [90.0])["q"], atol=1e-6)
