"""Compiled GRU step (nodes/observer/gru_step.py) against onnxruntime: same numbers, or not used at all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from nodes.observer import RnnObserver
from nodes.observer.gru_step import MATCH_TOL, NotCompilable, compile_step, read_gru_weights
from nodes.observer.session import StepBinding, load_session
from pipeline.evaluation.model_card import card_path_for, load_card, sha256_of, write_card
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import FrameFlag, frame_info
from pipeline.runtime.testing import make_block
from tests.observer_models import CHAINS, build_model, synth_frames
from tools.random_observer import export_random_observer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gru_models")
    knee = CHAINS / "knee.yaml"
    return {"dir": d,
            "h16x2": export_random_observer(knee, d, "obs_h16x2", seed=1, hidden=16, layers=2),
            "h24x1": export_random_observer(knee, d, "obs_h24x1", seed=2, hidden=24, layers=1),
            "h32x3": export_random_observer(knee, d, "obs_h32x3", seed=3, hidden=32, layers=3),
            "other": build_model(d, "plain_gru", seed=4)}


def _steps(step, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs (T, n_out) of one-frame runs of ``step`` over ``x`` (T, n_features)."""
    ys = []
    for row in x:
        step.x[0] = row
        y, state = step.run(state)
        ys.append(y[0].copy())
    return np.array(ys), state


def _features(n: int, seed: int) -> np.ndarray:
    """Knee model input (n, 12): simulated acc (m/s^2) and gyr (rad/s) of thigh and shank."""
    f = synth_frames(n=n, seed=seed)
    return np.concatenate([f["acc"], f["gyr"]], axis=2).reshape(n, -1).astype(np.float32)


@pytest.mark.parametrize("key", ["h16x2", "h24x1", "h32x3"])
def test_compiled_step_equals_onnxruntime_on_simulated_motion(models, key):
    session = load_session(models[key], (models["dir"],))
    assert session.step_engine == "compiled"
    x = _features(600, seed=5)
    y_ref, state_ref = session.run(x, session.zero_state())
    y, state = _steps(session.step_binding(), x, session.zero_state())
    assert np.abs(y - y_ref).max() < MATCH_TOL
    assert np.abs(state[0] - state_ref[0]).max() < MATCH_TOL
    y_ort, _ = _steps(StepBinding(session), x, session.zero_state())
    assert np.abs(y - y_ort).max() < MATCH_TOL


@pytest.mark.parametrize("name", ["knee", "arm3-sparse"])
def test_shipped_models_use_the_compiled_step_and_match(name):
    session = load_session(REPO / "models" / f"{name}.onnx", (REPO / "models",))
    assert session.step_engine == "compiled"
    rng = np.random.default_rng(0)
    w = session.weights
    x = (w.mean + w.std * rng.normal(size=(300, len(w.mean)))).astype(np.float32)
    y_ref, _ = session.run(x, session.zero_state())
    y, _ = _steps(session.step_binding(), x, session.zero_state())
    assert np.abs(y - y_ref).max() < MATCH_TOL


def test_other_networks_keep_the_onnxruntime_step(models):
    session = load_session(models["other"], (models["dir"],))
    assert session.weights is None
    assert session.step_engine.startswith("onnxruntime (compiled step: graph ops")
    assert isinstance(session.step_binding(), StepBinding)
    with pytest.raises(NotCompilable, match="not the GRU observer"):
        read_gru_weights(models["other"])


def _retouched(models: dict, tmp_path: Path, name: str, edit) -> Path:
    """A copy of the h16x2 model with ``edit(onnx_model)`` applied, card rehashed."""
    model = onnx.load(str(models["h16x2"]))
    edit(model)
    out = tmp_path / f"{name}.onnx"
    onnx.save(model, str(out))
    card = dataclasses.replace(load_card(models["h16x2"]), name=name, onnx_file=out.name,
                               sha256=sha256_of(out), path=card_path_for(out))
    write_card(card, card.path)
    return out


def _set_gelu_divisor(model: onnx.ModelProto) -> None:
    """Change the embedding GELU's x / sqrt(2) into x / 2: same graph, other numbers."""
    const = next(n for n in model.graph.node if n.op_type == "Constant"
                 and n.output[0] == "/embed/embed.1/Constant_output_0")
    const.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(2.0, np.float32)))


def _reset_gate_after(model: onnx.ModelProto) -> None:
    """GRU variant with the reset gate applied before the recurrent product."""
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    next(a for a in gru.attribute if a.name == "linear_before_reset").i = 0


@pytest.mark.parametrize("edit, reason", [(_set_gelu_divisor, "differs from onnxruntime"),
                                          (_reset_gate_after, "linear_before_reset")])
def test_a_graph_the_kernel_does_not_reproduce_stays_on_onnxruntime(models, tmp_path, edit,
                                                                     reason):
    path = _retouched(models, tmp_path, "retouched", edit)
    session = load_session(path, (tmp_path,))
    assert session.weights is None and reason in session.step_engine
    with pytest.raises(NotCompilable, match=reason):
        compile_step(path, session.run, 12, (2, 16))
    x = _features(50, seed=6)
    y_ref, _ = session.run(x, session.zero_state())
    y, _ = _steps(session.step_binding(), x, session.zero_state())
    assert np.abs(y - y_ref).max() < 1e-5  # the onnxruntime step, right for this graph


def _feed(node: RnnObserver, frames: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    info = frame_info("src/imu.frame", ["thigh", "shank"], 100.0)
    start, i = len(node.emitted), 0
    for k in sizes:
        node.on_block("frame", make_block(info, frames[i:i + k], t_host=int(frames["t_host"][i])))
        i += k
    return np.concatenate([b.data for b in node.emitted[start:]])


def test_node_step_mode_on_the_kernel_equals_block_mode_and_the_onnxruntime_step(models):
    frames = synth_frames(n=400, seed=3)
    frames["flags"][100:104] = int(FrameFlag.MISSING)
    frames["acc"][100:104] = np.nan
    frames["t_host"][250:] += int(2e9)  # a pause longer than reset_gap_s: one reset
    ctx = GraphContext(chain_file=CHAINS / "knee.yaml", model_dirs=(models["dir"],))
    rng = np.random.default_rng(7)
    sizes = np.diff(np.r_[0, np.sort(rng.choice(np.arange(1, 400), 60, replace=False)), 400])
    outs = {}
    for mode, engine in (("step", "auto"), ("step", "onnxruntime"), ("block", "auto")):
        node = RnnObserver.create("obs", context=ctx, model=str(models["h16x2"]), mode=mode,
                                  step_engine=engine)
        assert node.stats.extra["step_engine"] == ("compiled" if engine == "auto" else
                                                   "onnxruntime")
        outs[mode, engine] = _feed(node, frames, np.ones(400, int) if mode == "step" else sizes)
        assert node.stats.extra["resets"] == 1
    kernel = outs["step", "auto"]
    for other in (outs["step", "onnxruntime"], outs["block", "auto"]):
        assert np.abs(kernel["angle"] - other["angle"]).max() < 1e-5
        assert np.abs(kernel["q_rel"] - other["q_rel"]).max() < 1e-5


def test_step_engine_onnxruntime_skips_the_kernel_and_unknown_engines_are_refused(models):
    session = load_session(models["h24x1"], (models["dir"],), step_engine="onnxruntime")
    assert session.step_engine == "onnxruntime" and session.weights is None
    assert isinstance(session.step_binding(), StepBinding)
    with pytest.raises(ValueError, match="step_engine"):
        load_session(models["h24x1"], (models["dir"],), step_engine="fast")
