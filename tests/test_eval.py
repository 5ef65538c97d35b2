"""``imuflow eval`` and ``evaluate()`` against hand-made truth with known errors.

The model is a pass-through ONNX graph (``y = imu[..., :8]``, ``hn = h0``), so the data
decides exactly what the model "estimates": each sequence carries the true arm3 motion and,
in its input channels, that motion with a known error added. The root's inclination is off
by 5 deg, seg2's hinge by +10 deg and seg3's by -20 deg after the warm-up and by 90 deg
inside it. So every statistic after the warm-up is exactly 5, 10 and 20 deg (mean = RMSE =
every percentile = max), the warm-up's 90 deg must never show, and outputs taken out of
time order would not give a constant error (the true motion varies).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.evaluation.imu_dataset import ImuDataset, load_dataset
from pipeline.evaluation.model_card import (
    ModelCard,
    OutputBody,
    StateTensor,
    load_card,
    sha256_of,
    write_card,
)
from pipeline.evaluation.observer_eval import OnnxObserverModel, body_errors, evaluate
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import hinge_to_rel
from pipeline.kinematics.quaternion import np_qfrom_axis_angle, np_qmul
from tools.training.data import SEEDS, generate
from tools.training.problem import get_problem

IMUFLOW = [sys.executable, "-m", "pipeline"]
ARM3 = REPO / "configs" / "chains" / "arm3.yaml"
RATE = 100.0
S, T, WARMUP_S = 2, 400, 1.0           # 2 sequences x 4 s; the first 100 samples are warm-up
K = round(WARMUP_S * RATE)
EXPECTED = {"seg1": 5.0, "seg2": 10.0, "seg3": 20.0}   # |error| after the warm-up, deg
WARMUP_ERROR_DEG = 90.0                 # seg3's error inside the warm-up only
STATS = ("mean_deg", "rmse_deg", "p50_deg", "p90_deg", "p95_deg", "p99_deg", "max_deg")


def _passthrough_model(folder: Path, hidden: int = 4) -> Path:
    """An ONNX observer with the model-card IO whose output is its first 8 input channels."""
    import onnx
    from onnx import TensorProto, helper

    imu = helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["B", "T", 12])
    h0 = helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "B", hidden])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", 8])
    hn = helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, "B", hidden])
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v])
              for n, v in (("start", 0), ("end", 8), ("axis", 2))]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["imu", "start", "end", "axis"], ["y"]),
         helper.make_node("Identity", ["h0"], ["hn"])],
        "passthrough", [imu, h0], [y, hn], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "passthrough.onnx"
    onnx.save(model, str(path))
    chain = load_chain(ARM3)
    write_card(ModelCard(
        name="passthrough", onnx_file=path.name, sha256=sha256_of(path), chain=str(ARM3),
        bodies=chain.body_names, imus=("seg1", "seg3"), rate_hz=RATE, input_name="imu",
        state=(StateTensor("h0", "hn", (1, hidden)),), output_name="y",
        outputs=(OutputBody("seg1", "quat"), OutputBody("seg2", "sincos"),
                 OutputBody("seg3", "sincos")),
        training={"recipe": "none: y = imu[..., :8] (test model)"}), path.with_suffix(".json"))
    return path


def _axis_angle(axis: tuple[float, float, float], angle: np.ndarray) -> np.ndarray:
    return np_qfrom_axis_angle(np.asarray(axis, np.float64), np.asarray(angle, np.float64))


def hand_made(n_seq: int = S, n: int = T) -> ImuDataset:
    """True arm3 motion (S, T) and, as model input, the same motion with the known errors."""
    chain = load_chain(ARM3)
    t = np.arange(n) / RATE
    s = np.arange(n_seq)[:, None]
    # root: heading turning, inclination (pitch) swinging; hinges: large smooth motions
    q1 = np_qmul(_axis_angle((0, 0, 1), 0.7 * t + s),
                 _axis_angle((0, 1, 0), 0.4 * np.sin(2 * t + s)))
    a2 = 1.2 * np.sin(2 * np.pi * 0.4 * t + s)
    a3 = -0.8 + 0.5 * np.cos(2 * np.pi * 0.3 * t + 2 * s)
    q_rel = np.stack([q1, hinge_to_rel(a2, chain.rotations[1], chain.axes[1]),
                      hinge_to_rel(a3, chain.rotations[2], chain.axes[2])], axis=2)
    # estimates: root tilted 5 deg about the earth's x axis (inclination error exactly 5 deg)
    q1_est = np_qmul(_axis_angle((1, 0, 0), np.radians(EXPECTED["seg1"])), q1)
    a2_est = a2 + np.radians(EXPECTED["seg2"])
    a3_est = a3 - np.radians(EXPECTED["seg3"])
    a3_est[:, :K] = a3[:, :K] + np.radians(WARMUP_ERROR_DEG)  # only inside the warm-up
    imu = np.zeros((n_seq, n, 12))
    imu[..., 0:4] = q1_est
    imu[..., 4], imu[..., 5] = np.sin(a2_est), np.cos(a2_est)
    imu[..., 6], imu[..., 7] = np.sin(a3_est), np.cos(a3_est)
    return ImuDataset(imu=imu.astype(np.float32), q_rel=q_rel.astype(np.float32), rate_hz=RATE,
                      chain=str(ARM3), imus=("seg1", "seg3"), bodies=chain.body_names,
                      seeds=-np.ones(n_seq, np.int64), settings={"hand_made": True})


def _assert_expected(per_joint: dict, tol: float = 2e-3) -> None:
    assert set(per_joint) == set(EXPECTED)
    for body, value in EXPECTED.items():
        row = per_joint[body]
        row = row.as_dict() if hasattr(row, "as_dict") else row
        for key in STATS:
            assert row[key] == pytest.approx(value, abs=tol), (body, key, row)


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "handmade.npz"
    hand_made().save(data)
    return _passthrough_model(root), data


def test_library_scores_the_hand_made_errors_exactly(model_and_data: tuple[Path, Path]) -> None:
    model, data = model_and_data
    result = evaluate(OnnxObserverModel(model), load_dataset(data), WARMUP_S)
    _assert_expected(result.stats)
    for body in EXPECTED:
        assert result.stats[body].n == S * (T - K), body  # every sample after the warm-up
    # the whole error series, warm-up included, in time order
    e3 = np.abs(result.errors["seg3"])
    np.testing.assert_allclose(e3[:, :K], WARMUP_ERROR_DEG, atol=2e-3)
    np.testing.assert_allclose(e3[:, K:], EXPECTED["seg3"], atol=2e-3)
    np.testing.assert_allclose(result.errors["seg2"], EXPECTED["seg2"], atol=2e-3)  # signed


def test_warm_up_errors_count_only_when_the_warm_up_is_shorter(
        model_and_data: tuple[Path, Path]) -> None:
    model, data = model_and_data
    s = evaluate(OnnxObserverModel(model), load_dataset(data), 0.0).stats["seg3"]
    share = K / T  # a quarter of the samples are 90 deg off, the rest 20 deg
    assert s.mean_deg == pytest.approx(share * 90 + (1 - share) * 20, abs=2e-3)
    assert s.rmse_deg == pytest.approx(np.sqrt(share * 90 ** 2 + (1 - share) * 20 ** 2), abs=2e-3)
    assert s.max_deg == pytest.approx(90.0, abs=2e-3) and s.p50_deg == pytest.approx(20.0, abs=2e-3)


def test_eval_prints_per_joint_table_and_plots(model_and_data: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    model, data = model_and_data
    png = tmp_path / "err.png"
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--warmup-s", str(WARMUP_S),
                                    "--plot", str(png)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "2 sequences x 4 s, after 1 s warm-up" in lines[0]
    assert lines[1].split()[:8] == ["joint", "mean", "rmse", "p50", "p90", "p95", "p99", "max"]
    rows = {ln.split()[0]: [float(v) for v in ln.split()[1:]] for ln in lines[3:]}
    assert set(rows) == set(EXPECTED)
    for body, vals in rows.items():
        assert vals == pytest.approx([EXPECTED[body]] * 7, abs=0.01), (body, vals)
    assert png.stat().st_size > 10_000


def test_eval_json_gives_the_hand_made_errors(model_and_data: tuple[Path, Path]) -> None:
    model, data = model_and_data
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--json", "--warmup-s", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    _assert_expected(json.loads(out.stdout)["per_joint"])
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--json"],  # default 5 s
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0 and "warm-up" in out.stderr  # longer than the 4 s sequences


def test_true_outputs_give_zero_error(model_and_data: tuple[Path, Path]) -> None:
    """The decoding and error path itself: feeding the truth encoded as outputs gives 0 deg."""
    from tools.training.data import encode_targets

    model, _ = model_and_data
    card = load_card(model)
    ds = generate(get_problem("arm3-sparse"), [SEEDS["heldout"]], 3.0, progress=False)
    y = encode_targets(get_problem("arm3-sparse"), load_chain(ARM3), ds.q_rel)
    errs = body_errors(card, load_chain(ARM3), y, ds.q_rel)
    assert set(errs) == set(EXPECTED)
    for body, e in errs.items():
        assert np.abs(e).max() < 0.05, body


def test_eval_refuses_wrong_imus_and_tampered_model(model_and_data: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    model, data = model_and_data
    knee = tmp_path / "knee.npz"
    generate(get_problem("knee"), [SEEDS["heldout"]], 2.0, progress=False).save(knee)
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(knee)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0 and "do not match" in out.stderr
    card = load_card(model)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model.read_bytes() + b"x")
    write_card(card.__class__(**{**card.__dict__, "onnx_file": "bad.onnx"}), tmp_path / "bad.json")
    out = subprocess.run(IMUFLOW + ["eval", str(bad), str(data)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0 and "sha256" in out.stderr


def _write_session(path: Path, ds: ImuDataset) -> None:
    """Sequence 0 of ``ds`` as the recorder writes a simulated session: imu.raw per IMU site
    (acc = input channels 0-2, gyr = 3-5 of that IMU) and chain.truth, 100 Hz, blocks of 50."""
    from pipeline.recording.session_writer import SessionWriter
    from pipeline.runtime.message import StreamInfo
    from pipeline.runtime.streams import RAW_IMU_DTYPE, TRUTH, raw_imu_info, state_dtype
    from pipeline.runtime.testing import make_block

    chain = load_chain(ARM3)
    n = ds.imu.shape[1]
    t_host = 5_000_000_000 + np.arange(n, dtype=np.int64) * 10_000_000
    tdt = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
    truth_info = StreamInfo.for_array("sim/chain.truth", TRUTH, tdt, rate_hz=RATE)
    infos = [raw_imu_info(f"sim/imu.raw:{name}", name, RATE) for name in ds.imus]
    per_imu = ds.imu[0].reshape(n, len(ds.imus), 6)
    w = SessionWriter(path)
    try:
        for a in range(0, n, 50):
            b = slice(a, a + 50)
            for j, info in enumerate(infos):
                raw = np.zeros(len(t_host[b]), RAW_IMU_DTYPE)
                raw["t_host"], raw["t_sensor"] = t_host[b], t_host[b] - 123
                raw["acc"], raw["gyr"] = per_imu[b, j, :3], per_imu[b, j, 3:]
                w.write_block(make_block(info, raw, t_host=int(t_host[a])), int(t_host[a]))
            truth = np.zeros(len(t_host[b]), tdt)
            truth["t_host"], truth["q_rel"] = t_host[b], ds.q_rel[0, b]
            w.write_block(make_block(truth_info, truth, t_host=int(t_host[a])), int(t_host[a]))
    finally:
        w.close()


def test_eval_reads_an_mcap_session_with_truth(model_and_data: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    from pipeline.evaluation.imu_dataset import dataset_from_session

    model, data = model_and_data
    ds = load_dataset(data)
    mcap = tmp_path / "handmade.mcap"
    _write_session(mcap, ds)
    card = load_card(model)
    got = dataset_from_session(mcap, card.imus, card.chain, load_chain(ARM3).body_names)
    assert got.imu.shape == (1, T, 12) and got.rate_hz == pytest.approx(RATE)
    # equal stamps: resampling onto the truth's stamps is exact
    assert np.array_equal(got.imu[0], ds.imu[0]) and np.array_equal(got.q_rel[0], ds.q_rel[0])
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(mcap), "--json", "--warmup-s", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    _assert_expected(json.loads(out.stdout)["per_joint"])


def test_eval_picks_the_model_imus_from_a_larger_dataset(model_and_data: tuple[Path, Path]) -> None:
    model, data = model_and_data
    ds = load_dataset(data)
    per = ds.imu.reshape(S, T, 2, 6)
    extra = np.random.default_rng(0).normal(size=(S, T, 1, 6)).astype(np.float32)
    wide = replace(ds, imu=np.concatenate([per[:, :, 1:], extra, per[:, :, :1]],
                                          axis=2).reshape(S, T, 18),
                   imus=("seg3", "other", "seg1"))
    _assert_expected(evaluate(OnnxObserverModel(model), wide, WARMUP_S).stats)


def test_predictions_of_true_outputs_are_the_truth(model_and_data: tuple[Path, Path]) -> None:
    """predictions() turns outputs back into q_rel: the truth encoded as outputs comes back."""
    from pipeline.evaluation.joint_errors import rotation_error_deg
    from pipeline.evaluation.observer_eval import predictions
    from tools.training.data import encode_targets

    model, data = model_and_data
    card = load_card(model)
    chain = load_chain(ARM3)
    ds = load_dataset(data)
    q = predictions(card, chain, encode_targets(get_problem("arm3-sparse"), chain, ds.q_rel))
    assert q.shape == ds.q_rel.shape
    for o in card.outputs:
        i = chain.index(o.body)
        if chain.parents[i] >= 0:  # hinges: the whole relative rotation
            assert rotation_error_deg(q[..., i, :], ds.q_rel[..., i, :]).max() < 0.05, o.body
    assert np.isfinite(q).all()  # arm3-sparse estimates every body


def test_eval_writes_predictions_and_data_without_truth_is_one_line(
        model_and_data: tuple[Path, Path], tmp_path: Path) -> None:
    from pipeline.evaluation.joint_errors import inclination_error_deg, rotation_error_deg

    model, data = model_and_data
    out_npz = tmp_path / "pred.npz"
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--warmup-s", "1",
                                    "--predictions", str(out_npz)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    pred = np.load(out_npz)
    ds = load_dataset(data)
    assert pred["q_rel"].shape == ds.q_rel.shape and list(pred["bodies"]) == list(ds.bodies)
    q, truth = pred["q_rel"], ds.q_rel
    # the estimates are the hand-made ones: each body off the truth by its known error
    np.testing.assert_allclose(inclination_error_deg(q[..., 0, :], truth[..., 0, :]), 5.0,
                               atol=2e-3)
    np.testing.assert_allclose(rotation_error_deg(q[..., 1, :], truth[..., 1, :]), 10.0,
                               atol=2e-3)
    np.testing.assert_allclose(rotation_error_deg(q[:, K:, 2, :], truth[:, K:, 2, :]), 20.0,
                               atol=2e-3)
    from pipeline.recording.session_writer import SessionWriter
    from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info
    from pipeline.runtime.testing import make_block

    session = tmp_path / "no_truth.mcap"  # IMU data only, as imported from a field recording
    writer = SessionWriter(session)
    info = raw_imu_info("sim/imu.raw:seg1", "seg1", 100.0)
    writer.write_block(make_block(info, np.zeros(10, RAW_IMU_DTYPE)))
    writer.close()
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(session)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0 and "no 'chain.truth' stream" in out.stderr
    assert "Traceback" not in out.stderr


def test_ground_truth_with_gaps_is_scored_where_it_exists(model_and_data: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """Optical ground truth has gaps (occluded markers, stored as NaN): those samples are left
    out of the statistics and counted, the estimates are still written for every frame; an
    estimate that is NaN where the truth is known is still refused."""
    model, data = model_and_data
    ds = load_dataset(data)
    q_rel = ds.q_rel.copy()
    q_rel[0, K + 10:K + 30] = np.nan    # every body, 20 frames
    q_rel[1, K + 50:K + 55, 2] = np.nan  # seg3 only, 5 frames
    gappy = tmp_path / "gappy.npz"
    replace(ds, q_rel=q_rel).save(gappy)
    result = evaluate(OnnxObserverModel(model), load_dataset(gappy), WARMUP_S)
    _assert_expected(result.stats)
    assert [result.stats[b].unscored for b in ("seg1", "seg2", "seg3")] == [20, 20, 25]
    assert result.stats["seg3"].n == S * (T - K) - 25
    pred = tmp_path / "pred.npz"
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(gappy), "--warmup-s", "1",
                                    "--predictions", str(pred), "--plot", str(tmp_path / "e.png")],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "left out of the statistics: seg1 20 of" in out.stdout and "seg3 25 of" in out.stdout
    assert np.isfinite(np.load(pred)["q_rel"]).all()
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(gappy), "--warmup-s", "1", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(out.stdout)["unscored_no_truth"] == {"seg1": 20, "seg2": 20, "seg3": 25}
    imu = ds.imu.copy()
    imu[0, K + 40, 4:6] = np.nan  # the passthrough model's seg2 output: NaN where truth is known
    with pytest.raises(ValueError, match="where the ground truth is known"):
        evaluate(OnnxObserverModel(model), replace(ds, q_rel=q_rel, imu=imu), WARMUP_S)


def test_up_outputs_are_scored_by_inclination(model_and_data: tuple[Path, Path]) -> None:
    """A card whose root output is the vertical ("up", 3 values, any length): the root's
    error is the inclination error (5 deg here) and its estimate the heading-free one."""
    from pipeline.estimation.output_encoding import encode_outputs
    from pipeline.evaluation.observer_eval import predictions
    from pipeline.kinematics.quaternion import heading_free

    model, _ = model_and_data
    chain, data = load_chain(ARM3), hand_made()
    outputs = (("seg1", "up"), ("seg2", "sincos"), ("seg3", "sincos"))
    card = replace(load_card(model), outputs=tuple(OutputBody(b, e) for b, e in outputs))
    assert card.n_outputs == 7
    q_est = data.q_rel.astype(np.float64)
    q_est[..., 0, :] = data.imu[..., 0:4]  # the root tilted by 5 deg
    y = 3.0 * encode_outputs(chain, outputs, q_est)
    errs = body_errors(card, chain, y, data.q_rel)
    np.testing.assert_allclose(errs["seg1"], EXPECTED["seg1"], atol=2e-3)
    assert np.abs(errs["seg2"]).max() < 1e-3 and np.abs(errs["seg3"]).max() < 1e-3
    pred = predictions(card, chain, y)
    np.testing.assert_allclose(pred[..., 0, :], heading_free(q_est[..., 0, :]), atol=1e-6)


def test_a_card_with_up_on_a_non_root_body_is_refused(model_and_data: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    from pipeline.runtime.errors import ModelRejected

    model, _ = model_and_data
    card = load_card(model)
    bad = replace(card, outputs=(OutputBody("seg1", "up"), OutputBody("seg2", "up")))
    write_card(bad, tmp_path / "passthrough.json")
    (tmp_path / "passthrough.onnx").write_bytes(model.read_bytes())
    with pytest.raises(ModelRejected, match="'seg2': encoding 'up' is for the root 'seg1'"):
        load_card(tmp_path / "passthrough.json")


def test_resampled_keeps_the_samples_on_a_shared_grid_and_interpolates_between() -> None:
    ds = generate(get_problem("knee"), [SEEDS["heldout"]], 4.0, progress=False)
    half = ds.resampled(50.0)
    assert half.rate_hz == 50.0 and half.imu.shape[1] == (ds.imu.shape[1] - 1) // 2 + 1
    np.testing.assert_allclose(half.imu, ds.imu[:, ::2], atol=1e-5)
    np.testing.assert_allclose(half.q_rel, ds.q_rel[:, ::2], atol=1e-6)
    up = half.resampled(100.0)  # midpoints: the mean of the neighbours
    np.testing.assert_allclose(up.imu[:, 1:-1:2], (half.imu[:, :-1] + half.imu[:, 1:]) / 2,
                               atol=1e-5)
    q = up.q_rel[:, 1:-1:2].astype(np.float64)
    assert np.allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-6)
    # within a small angle of the truth between samples (knee: rates up to a few rad/s)
    dots = np.abs(np.sum(q * ds.q_rel[:, 1:-1:2][:, :q.shape[1]], axis=-1))
    assert np.degrees(2 * np.arccos(np.clip(dots, -1, 1))).max() < 1.0


def test_eval_resamples_data_at_another_rate(tmp_path: Path) -> None:
    """A 60 Hz set (Movella DOT's rate) scored by the 100 Hz knee model: resampled, said so."""
    data = tmp_path / "knee60.npz"
    generate(get_problem("knee-walk"), [SEEDS["heldout"] + k for k in range(2)], 30.0,
             rate_hz=60.0, progress=False).save(data)
    out = subprocess.run(IMUFLOW + ["eval", "models/knee.onnx", str(data), "--json"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout.splitlines()[0])
    assert doc["resampled_from_hz"] == 60.0
    assert doc["per_joint"]["shank"]["mean_deg"] < 4.0  # as at 100 Hz: 1.4 deg on 32 x 60 s
    out = subprocess.run(IMUFLOW + ["eval", "models/knee.onnx", str(data)], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert "the data's 60 Hz resampled to the model's 100 Hz" in out.stdout
