"""RnnObserver without a bus: real ONNX sessions of tiny GRU models, blocks fed to on_block."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from nodes.observer import RnnObserver
from nodes.observer.runner import FrameRing
from nodes.observer.session import load_session
from pipeline.evaluation.model_card import load_card
from pipeline.runtime.errors import ModelRejected
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import FrameFlag, frame_info
from pipeline.runtime.testing import make_block
from tests.observer_models import CHAINS, build_corrupt, build_model, build_nonfinite, synth_frames

KNEE = ("thigh", "shank")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"a": build_model(d, "knee_a", seed=1), "b": build_model(d, "knee_b", hidden=8,
                                                                    layers=1, seed=2),
            "arm3": build_model(d, "arm3", chain="arm3"),
            "pelvis": build_model(d, "knee_pelvis", imus=("thigh", "pelvis"), layers=1),
            "rate60": build_model(d, "knee_60", rate_hz=60.0, layers=1),
            "corrupt": build_corrupt(d), "dir": d}


def ctx(models: dict) -> GraphContext:
    return GraphContext(chain_file=CHAINS / "knee.yaml", model_dirs=(models["dir"],))


def reference_angle(model: Path, frames: np.ndarray) -> np.ndarray:
    """Shank angle (rad) from a plain onnxruntime run from zero state over all frames at once."""
    card = load_card(model)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.concatenate([frames["acc"], frames["gyr"]], axis=2).reshape(len(frames), -1)
    layers, hidden = card.state[0].shape
    y, _ = sess.run(None, {"imu": x[None].astype(np.float32),
                           "h0": np.zeros((layers, 1, hidden), np.float32)})
    return np.arctan2(y[0, :, 4], y[0, :, 5])


def feed(node: RnnObserver, frames: np.ndarray, info=None, sizes: int | None = None,
         seed: int = 0) -> np.ndarray:
    """Feed frames in blocks (random sizes 1..19 unless ``sizes``); return what was emitted."""
    info = info or frame_info("src/imu.frame", list(KNEE), 100.0)
    rng = np.random.default_rng(seed)
    start, i = len(node.emitted), 0
    while i < len(frames):
        k = sizes or int(rng.integers(1, 20))
        node.on_block("frame", make_block(info, frames[i:i + k], t_host=int(frames["t_host"][i])))
        i += k
    return np.concatenate([b.data for b in node.emitted[start:]])


def test_output_matches_plain_onnxruntime_and_one_sample_per_frame(models):
    frames = synth_frames(n=200)
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    out = feed(node, frames)
    assert np.array_equal(out["t_host"], frames["t_host"])
    np.testing.assert_allclose(out["angle"][:, 0], reference_angle(models["a"], frames), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["q_rel"], axis=2), 1.0, atol=1e-5)
    meta = node.emitted[-1].info.meta
    assert meta["model"] == "knee_a" and meta["bodies"] == ["thigh", "shank"]
    assert node.stats.extra["model"] == "knee_a" and len(node.stats.extra["sha256"]) == 12


def test_block_and_step_mode_give_the_same_numbers(models):
    frames = synth_frames(n=400, seed=3)
    frames["flags"][100:104] = int(FrameFlag.MISSING)
    frames["acc"][100:104] = np.nan
    frames["t_host"][250:] += int(2e9)  # a pause longer than reset_gap_s
    outs = {}
    for mode in ("step", "block"):
        node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), mode=mode)
        outs[mode] = feed(node, frames, seed=7)
        assert node.stats.extra["resets"] == 1
    assert np.abs(outs["step"]["angle"] - outs["block"]["angle"]).max() < 1e-5
    assert np.abs(outs["step"]["q_rel"] - outs["block"]["q_rel"]).max() < 1e-5


def test_outputs_do_not_depend_on_block_size(models):
    frames = synth_frames(n=150, seed=4)
    node1 = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), mode="block")
    node2 = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), mode="block")
    a, b = feed(node1, frames, sizes=1), feed(node2, frames, sizes=150)
    assert np.abs(a["angle"] - b["angle"]).max() < 1e-5


def test_sensor_order_of_the_stream_is_mapped_to_the_cards(models):
    frames = synth_frames(n=120)
    swapped = synth_frames(n=120, imus=("shank", "thigh"))
    node1 = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    node2 = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    a = feed(node1, frames)
    b = feed(node2, swapped, info=frame_info("src/imu.frame", ["shank", "thigh"], 100.0))
    assert np.abs(a["angle"] - b["angle"]).max() < 1e-6


def test_missing_frames_are_held_not_fed_and_flagged_as_gap(models):
    frames = synth_frames(n=120, seed=5)
    bad = frames.copy()
    bad["flags"][50:60, 1] = int(FrameFlag.MISSING)
    bad["acc"][50:60, 1] = np.nan
    bad["gyr"][55, 0] = np.inf  # non-finite values count as invalid too
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    out = feed(node, bad, sizes=10)
    assert np.isfinite(out["angle"]).all() and np.isfinite(out["q_rel"]).all()
    assert np.all(out["angle"][50:60] == out["angle"][49])  # held
    gaps = [b.header.flags & 1 for b in node.emitted]
    assert gaps[5] and not gaps[4] and not gaps[6]
    kept = np.concatenate([frames[:50], frames[60:]])  # the state went on as if they were absent
    ref = reference_angle(models["a"], kept)
    np.testing.assert_allclose(out["angle"][60:, 0], ref[50:], atol=1e-5)
    assert node.stats.extra["held_frames"] == 10 and node.stats.extra["resets"] == 0


def test_gap_longer_than_reset_gap_resets_the_state(models):
    frames = synth_frames(n=200, seed=6)
    frames["t_host"][120:] += int(0.6e9)  # 0.61 s between frames 119 and 120 > reset_gap_s 0.5
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), reset_gap_s=0.5)
    out = feed(node, frames)
    np.testing.assert_allclose(out["angle"][120:, 0], reference_angle(models["a"], frames[120:]),
                               atol=1e-5)
    assert node.stats.extra["resets"] == 1
    short = synth_frames(n=200, seed=6)
    short["t_host"][120:] += int(0.3e9)  # shorter than reset_gap_s: state kept
    node2 = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), reset_gap_s=0.5)
    out2 = feed(node2, short)
    np.testing.assert_allclose(out2["angle"][:, 0], reference_angle(models["a"], short), atol=1e-5)
    assert node2.stats.extra["resets"] == 0


def test_long_run_of_missing_frames_resets(models):
    frames = synth_frames(n=200, seed=6)
    frames["flags"][100:170] = int(FrameFlag.MISSING)  # 0.7 s without data
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), reset_gap_s=0.5)
    out = feed(node, frames)
    np.testing.assert_allclose(out["angle"][170:, 0], reference_angle(models["a"], frames[170:]),
                               atol=1e-5)
    assert node.stats.extra["resets"] == 1


def test_reset_command_restarts_from_zero_state(models):
    frames = synth_frames(n=200, seed=8)
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    feed(node, frames[:100])
    reply = node.on_command("reset", {})
    assert reply["ok"] and reply["resets"] == 1
    out = feed(node, frames[100:])
    np.testing.assert_allclose(out["angle"][:, 0], reference_angle(models["a"], frames[100:]),
                               atol=1e-5)


def _swap(node: RnnObserver, model: Path, frames: np.ndarray | None = None) -> tuple[dict, int]:
    """Send swap; feed ``frames`` one by one until the reply is ready; return (reply, n fed)."""
    fut = node.on_command("swap", {"model": str(model)})
    t_end = time.monotonic() + 10
    i = 0
    while not fut.done() and time.monotonic() < t_end:
        if frames is not None and i < len(frames):
            feed(node, frames[i:i + 1])
            i += 1
        time.sleep(0.002)
    return fut.result(timeout=0), i


@pytest.mark.parametrize("stream_during_swap", [False, True])
def test_swap_warms_on_recent_input_and_continues(models, stream_during_swap):
    frames = synth_frames(n=600, seed=9)
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]), warmup_s=1.0)
    feed(node, frames[:300])
    reply, fed = _swap(node, models["b"], frames[300:400] if stream_during_swap else None)
    assert reply["ok"] and reply["old"] == "knee_a" and reply["new"] == "knee_b", reply
    assert reply["warmup_frames"] == 100 and reply["catchup_lost"] == 0
    assert reply["switched_by"] == ("node" if stream_during_swap else "loader")
    for key in ("load_ms", "check_ms", "warmup_ms", "switch_ms"):
        assert reply[key] >= 0
    feed(node, frames[300 + fed:])
    out = np.concatenate([b.data for b in node.emitted])
    model = np.concatenate([[b.info.meta["model"]] * b.n for b in node.emitted])
    assert np.array_equal(out["t_host"], frames["t_host"])  # one output per frame, in order
    new = np.flatnonzero(model == "knee_b")
    assert len(new) >= 200 and np.all(np.diff(new) == 1) and new[-1] == 599
    ref_a = reference_angle(models["a"], frames)
    np.testing.assert_allclose(out["angle"][:new[0], 0], ref_a[:new[0]], atol=1e-5)
    # the new model's state: warmed on frames 200..299, then caught up to the switch
    ref_b = reference_angle(models["b"], frames[200:])
    np.testing.assert_allclose(out["angle"][new, 0], ref_b[new - 200], atol=1e-5)
    assert node.stats.extra["swaps"] == 1 and node.stats.extra["model"] == "knee_b"


@pytest.mark.parametrize("key, words", [("arm3", "bodies"), ("pelvis", "IMUs"),
                                        ("rate60", "Hz"), ("corrupt", "not a valid ONNX")])
def test_misfit_or_corrupt_swap_is_refused_and_old_model_keeps_running(models, key, words):
    frames = synth_frames(n=300, seed=10)
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    feed(node, frames[:150])
    reply, _ = _swap(node, models[key])
    assert reply["ok"] is False and words in reply["reason"], reply
    assert reply["model"] == "knee_a"
    out = feed(node, frames[150:])
    np.testing.assert_allclose(out["angle"][:, 0], reference_angle(models["a"], frames)[150:],
                               atol=1e-5)
    assert node.stats.extra["refused_swaps"] == 1 and node.stats.extra["swaps"] == 0


def test_swap_before_any_input_is_refused(models):
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    reply = node.on_command("swap", {"model": str(models["b"])})
    assert reply["ok"] is False and "no input" in reply["reason"]


def test_misfit_models_are_refused_at_start(models, tmp_path):
    with pytest.raises(ModelRejected, match="bodies"):
        RnnObserver.create("obs", context=ctx(models), model=str(models["arm3"]))
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["pelvis"]))
    with pytest.raises(ModelRejected, match=r"IMUs \['thigh', 'pelvis'\]"):
        feed(node, synth_frames(n=5))
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
    with pytest.raises(ModelRejected, match="60 Hz"):
        feed(node, synth_frames(n=5, rate_hz=60.0),
             info=frame_info("src/imu.frame", list(KNEE), 60.0))
    outside = GraphContext(chain_file=CHAINS / "knee.yaml", model_dirs=(tmp_path,))
    with pytest.raises(ModelRejected, match="outside the model folders"):
        RnnObserver.create("obs", context=outside, model=str(models["a"]))
    with pytest.raises(ModelRejected, match="not a valid ONNX"):
        load_session(models["corrupt"], (models["dir"],))


def test_card_that_disagrees_with_the_onnx_io_is_refused(models, tmp_path):
    onnx = build_model(tmp_path, "wrong_hidden", hidden=8, layers=1)
    card = json.loads(onnx.with_suffix(".json").read_text())
    card["state"][0]["shape"] = [1, 32]
    onnx.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelRejected, match="'h0' has shape"):
        load_session(onnx, (tmp_path,))
    card["state"][0]["shape"] = [1, 8]
    card["outputs"]["bodies"] = [{"body": "shank", "encoding": "sincos"}]  # y has 6, card 2
    onnx.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelRejected, match="'y' has shape"):
        load_session(onnx, (tmp_path,))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelRejected, match="sha256"):
        load_session(onnx, (tmp_path,))


def test_frame_ring_keeps_the_newest_frames_in_order():
    ring = FrameRing(np.dtype("<i8"), 8)
    for start in range(0, 30, 3):
        ring.push(np.arange(start, start + 3))
    frames, first = ring.since(0)
    assert first == 22 and frames.tolist() == list(range(22, 30))
    frames, first = ring.since(27)
    assert first == 27 and frames.tolist() == [27, 28, 29]
    ring.push(np.arange(30, 50))
    assert ring.since(0)[0].tolist() == list(range(42, 50))


def test_output_decoding_matches_the_fk_hinge_helpers(models):
    import dataclasses

    from nodes.observer.fit import ModelFit
    from pipeline.evaluation.model_card import OutputBody
    from pipeline.kinematics.chain import load_chain
    from pipeline.kinematics.fk import hinge_to_rel, rel_to_hinge

    chain = load_chain(CHAINS / "arm3.yaml")
    card = dataclasses.replace(load_card(models["arm3"]), outputs=(
        OutputBody("seg1", "quat"), OutputBody("seg2", "quat"), OutputBody("seg3", "sincos")))
    fit = ModelFit(card, chain, np.arange(2), ("seg1", "seg2", "seg3"))
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 10)).astype(np.float32)
    q_rel, angle = np.zeros((50, 3, 4), np.float32), np.zeros((50, 2), np.float32)
    fit.decode(y, q_rel, angle)
    q2 = y[:, 4:8] / np.linalg.norm(y[:, 4:8], axis=1, keepdims=True)
    np.testing.assert_allclose(q_rel[:, 1], q2, atol=1e-6)
    np.testing.assert_allclose(angle[:, 0], rel_to_hinge(q2, chain.rotations[1], chain.axes[1]),
                               atol=1e-5)
    a3 = np.arctan2(y[:, 8], y[:, 9])
    np.testing.assert_allclose(angle[:, 1], a3, atol=1e-6)
    np.testing.assert_allclose(q_rel[:, 2], hinge_to_rel(a3, chain.rotations[2], chain.axes[2]),
                               atol=1e-6)


def test_bodies_the_model_does_not_estimate_stay_identity(models, tmp_path):
    """A knee model that outputs only the shank's hinge: the thigh's q_rel is identity."""
    model = build_model(models["dir"], "knee_shank_only", outputs=(("shank", "sincos"),),
                        layers=1)
    node = RnnObserver.create("obs", context=ctx(models), model=str(model), mode="block")
    out = feed(node, synth_frames(n=300, seed=5), sizes=37)
    np.testing.assert_array_equal(out["q_rel"][:, 0], np.tile([1, 0, 0, 0], (len(out), 1)))
    np.testing.assert_allclose(np.linalg.norm(out["q_rel"][:, 1], axis=1), 1.0, atol=1e-5)


ODD_CHAIN = """\
name: odd
units: {length: m, angle: rad}
bodies:
  - {name: root, parent: null, joint: {type: free}}
  - {name: b1, parent: root, joint: {type: hinge, axis: [0, -1, 0],
     rotation: [0.9238795325112867, 0.0, 0.0, 0.3826834323650898]}}
  - {name: b2, parent: b1, joint: {type: hinge, axis: [0.6, 0.0, 0.8]}}
  - {name: b3, parent: b1, joint: {type: hinge, axis: [1, 0, 0]}}
  - {name: b4, parent: b3, joint: {type: hinge, axis: [0, 0, 1],
     rotation: [0.7071067811865476, 0.7071067811865476, 0.0, 0.0]}}
imus:
  - {name: root, body: root}
"""


def _reference_decode(fit, y: np.ndarray, q_rel: np.ndarray, angle: np.ndarray) -> None:
    """The per-output decode loop that the vectorised ``ModelFit.decode`` replaced."""
    from nodes.observer.fit import _left_matrix

    ch = fit.chain
    hinges = [int(i) for i in ch.hinge_bodies]
    col, quat, sincos = 0, [], []
    for o in fit.card.outputs:
        b = ch.index(o.body)
        if o.encoding == "up":
            q_rel[:, b] = _reference_up(y[:, col:col + 3].astype(np.float64))
            col += 3
            continue
        (quat if o.encoding == "quat" else sincos).append(
            (col, b, hinges.index(b) if b in hinges else -1))
        col += 4 if o.encoding == "quat" else 2
    for col, b, h in quat:
        q = y[:, col:col + 4].astype(np.float64)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        q_rel[:, b] = q
        if h >= 0:
            qj = q @ _left_matrix(ch.rotations[b] * [1, -1, -1, -1]).T
            a = 2.0 * np.arctan2(qj[:, 1:] @ ch.axes[b], qj[:, 0])
            angle[:, h] = np.where(a > np.pi, a - 2 * np.pi,
                                   np.where(a <= -np.pi, a + 2 * np.pi, a))
    for col, b, h in sincos:
        a = np.arctan2(y[:, col].astype(np.float64), y[:, col + 1].astype(np.float64))
        angle[:, h] = a
        qa = np.empty((len(a), 4))
        qa[:, 0] = np.cos(0.5 * a)
        qa[:, 1:] = np.sin(0.5 * a)[:, None] * ch.axes[b]
        q_rel[:, b] = qa @ _left_matrix(ch.rotations[b]).T


def _reference_up(u: np.ndarray) -> np.ndarray:
    """Heading-free quaternions (n, 4) of verticals u (n, 3): ``heading_free`` of a rotation
    whose matrix has the unit vertical as its last row; zero u -> identity, NaN -> NaN."""
    from scipy.spatial.transform import Rotation

    from pipeline.kinematics.quaternion import heading_free

    out = np.full((len(u), 4), np.nan)
    for i, v in enumerate(u):
        n = np.linalg.norm(v)
        if n == 0.0:
            out[i] = (1.0, 0.0, 0.0, 0.0)
        elif np.isfinite(n):
            r3 = v / n
            r1 = np.cross([0.3, -0.5, 0.8], r3)
            r1 /= np.linalg.norm(r1)
            xyzw = Rotation.from_matrix(np.stack([r1, np.cross(r3, r1), r3])).as_quat()
            out[i] = heading_free(np.roll(xyzw, 1))
    return out


@pytest.mark.parametrize("chain_name, outputs", [
    ("odd", (("root", "up"), ("b1", "sincos"), ("b2", "quat"), ("b3", "sincos"),
             ("b4", "sincos"))),
    ("arm3", (("seg1", "up"), ("seg2", "sincos"), ("seg3", "sincos"))),
    ("odd", (("root", "quat"), ("b1", "sincos"), ("b2", "quat"), ("b3", "sincos"),
             ("b4", "sincos"))),
    ("odd", (("b4", "sincos"), ("b1", "quat"), ("b2", "sincos"), ("root", "quat"),
             ("b3", "quat"))),
    ("arm3", (("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos"))),  # simple axes path
    ("arm3", (("seg3", "sincos"), ("seg2", "sincos"))),
    ("knee", (("shank", "sincos"),)),
])
def test_vectorised_decode_equals_the_per_output_loop(models, tmp_path, chain_name, outputs):
    import dataclasses

    from nodes.observer.fit import ModelFit
    from pipeline.evaluation.model_card import OutputBody
    from pipeline.kinematics.chain import load_chain

    if chain_name == "odd":
        (tmp_path / "odd.yaml").write_text(ODD_CHAIN)
        chain = load_chain(tmp_path / "odd.yaml")
    else:
        chain = load_chain(CHAINS / f"{chain_name}.yaml")
    card = dataclasses.replace(load_card(models["arm3"]),
                               outputs=tuple(OutputBody(b, e) for b, e in outputs))
    fit = ModelFit(card, chain, np.arange(2), tuple(b for b, _ in outputs))
    rng = np.random.default_rng(3)
    n_out, n_hinge = card.n_outputs, len(chain.hinge_bodies)
    for n in (1, 2, 57):
        y = (rng.normal(size=(n, n_out)) * rng.choice([1e-6, 1.0, 30.0], (n, 1))).astype(
            np.float32)
        if n > 2:
            y[0] = 0.0  # zero quaternion / atan2(0, 0)
            y[1, 1] = np.nan  # a NaN output stays NaN where the loop made it NaN
        for dtype in (np.float64, np.float32):
            got = np.zeros((n, chain.n_bodies, 4), dtype), np.zeros((n, n_hinge), dtype)
            ref = np.zeros((n, chain.n_bodies, 4), dtype), np.zeros((n, n_hinge), dtype)
            fit.decode(y, *got)
            _reference_decode(fit, y, *ref)
            for g, r in zip(got, ref):
                np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
                np.testing.assert_allclose(g, r, rtol=0, atol=1e-11 if dtype == np.float64
                                           else 1e-7)


def test_one_frame_messages_give_the_same_numbers_as_blocks(models):
    """Step mode one frame per message (bound buffers) vs blocks, with held and reset frames."""
    frames = synth_frames(n=300, seed=11)
    frames["flags"][40:45, 0] = int(FrameFlag.MISSING | FrameFlag.AT_REST)
    frames["acc"][40:45, 0] = np.nan
    frames["flags"][60:70] = int(FrameFlag.INTERPOLATED | FrameFlag.AT_REST)  # usable
    frames["flags"][80, 1] = int(FrameFlag.INVALID)
    frames["gyr"][90, 1, 2] = -np.inf
    frames["t_host"][200:] += int(1e9)  # reset
    outs = []
    for sizes in (1, 10):
        node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]))
        outs.append(feed(node, frames, sizes=sizes))
        assert node.stats.extra["held_frames"] == 7 and node.stats.extra["resets"] == 1
    assert np.array_equal(outs[0]["angle"][40:45], np.repeat(outs[0]["angle"][39:40], 5, 0))
    assert np.abs(outs[0]["angle"] - outs[1]["angle"]).max() < 1e-6
    assert np.abs(outs[0]["q_rel"] - outs[1]["q_rel"]).max() < 1e-6
    node.on_command("reset", {})  # a fresh state is copied into the bound buffers
    again = feed(node, frames[:100], sizes=1)
    assert np.abs(again["angle"] - outs[0]["angle"][:100]).max() < 1e-6


def test_frame_ring_single_frame_pushes():
    dt = np.dtype([("t_host", "<i8"), ("acc", "<f4", (2, 3))])
    ring = FrameRing(dt, 5)
    for k in range(12):
        f = np.zeros(1, dt)
        f["t_host"], f["acc"] = k, k
        ring.push(f)
    frames, first = ring.since(0)
    assert first == 7 and frames["t_host"].tolist() == list(range(7, 12))
    assert np.array_equal(frames["acc"][:, 1, 2], np.arange(7, 12))


@pytest.mark.parametrize("value, warmup_s", [(float("nan"), 1.0), (float("inf"), 1.0),
                                             (float("nan"), 0.0)])
def test_swap_to_a_model_with_non_finite_outputs_is_refused(models, tmp_path, value, warmup_s):
    """The report's NaN model (ok: true, chain.state NaN): refused, the old model keeps running."""
    bad = build_nonfinite(models["dir"], f"knee_bad_{value}_{warmup_s}", value)
    frames = synth_frames(n=300, seed=11)
    node = RnnObserver.create("obs", context=ctx(models), model=str(models["a"]),
                              warmup_s=warmup_s)
    feed(node, frames[:150])
    reply, _ = _swap(node, bad)
    assert reply["ok"] is False and "non-finite outputs" in reply["reason"], reply
    assert reply["model"] == "knee_a"
    out = feed(node, frames[150:])
    assert np.isfinite(out["angle"]).all() and np.isfinite(out["q_rel"]).all()
    assert node.stats.extra["refused_swaps"] == 1 and node.stats.extra["model"] == "knee_a"
