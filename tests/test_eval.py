"""``imuflow eval``: a tiny exported model on a small generated held-out file prints the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.evaluation.imu_dataset import load_dataset
from pipeline.evaluation.model_card import load_card, write_card
from pipeline.evaluation.observer_eval import OnnxObserverModel, body_errors, evaluate
from tools.training.data import SEEDS, generate
from tools.training.export import export_run
from tools.training.problem import get_problem
from tools.training.trainer import TrainConfig, Trainer

IMUFLOW = [sys.executable, "-m", "pipeline"]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    cfg = TrainConfig(problem="arm3-sparse", train_sequences=2, val_sequences=1, sequence_s=4.0,
                      window_s=2.0, batch=2, hidden=8, layers=1, epochs=1, warmup_s=1.0,
                      data_dir=str(root / "data"))
    Trainer(cfg, root / "run").train()
    export_run(root / "run", root / "run" / "checkpoint.pt", root / "tiny", 2, 4.0, 1.0)
    data = root / "heldout.npz"
    generate(get_problem("arm3-sparse"), [SEEDS["heldout"], SEEDS["heldout"] + 1], 8.0,
             progress=False).save(data)
    return root / "tiny.onnx", data


def test_eval_prints_per_joint_table_and_plots(model_and_data: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    model, data = model_and_data
    png = tmp_path / "err.png"
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--warmup-s", "2",
                                    "--plot", str(png)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "2 sequences x 8 s, after 2 s warm-up" in lines[0]
    assert lines[1].split()[:8] == ["joint", "mean", "rmse", "p50", "p90", "p95", "p99", "max"]
    rows = {ln.split()[0]: [float(v) for v in ln.split()[1:]] for ln in lines[3:]}
    assert set(rows) == {"seg1", "seg2", "seg3"}
    for vals in rows.values():
        mean, rmse, p50, p90, p95, p99, mx = vals
        assert 0 <= p50 <= p90 <= p95 <= p99 <= mx <= 180 and mean <= rmse
    assert png.stat().st_size > 10_000


def test_eval_json_matches_library_result(model_and_data: tuple[Path, Path]) -> None:
    model, data = model_and_data
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    ref = evaluate(OnnxObserverModel(model), load_dataset(data), 5.0)
    for body, s in ref.stats.items():
        assert got["per_joint"][body] == s.as_dict()


def test_true_outputs_give_zero_error(model_and_data: tuple[Path, Path]) -> None:
    """The decoding and error path itself: feeding the truth encoded as outputs gives 0 deg."""
    from pipeline.kinematics.chain import load_chain
    from tools.training.data import encode_targets

    model, data = model_and_data
    card = load_card(model)
    ds = load_dataset(data)
    y = encode_targets(get_problem("arm3-sparse"), load_chain(REPO / card.chain), ds.q_rel)
    errs = body_errors(card, load_chain(REPO / card.chain), y, ds.q_rel)
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


def _write_sim_session(path: Path, seed: int, duration_s: float) -> np.ndarray:
    """A simulated arm3 session as the recorder writes it: imu.raw per sensor and chain.truth."""
    from pipeline.kinematics.chain import load_chain
    from pipeline.kinematics.imu_synth import simulate
    from pipeline.recording.session_writer import SessionWriter
    from pipeline.runtime.message import StreamInfo
    from pipeline.runtime.streams import RAW_IMU_DTYPE, TRUTH, raw_imu_info, state_dtype
    from pipeline.runtime.testing import make_block

    chain = load_chain(REPO / "configs/chains/arm3.yaml")
    rec = simulate(chain, duration_s, 100.0, seed)
    t_host = 5_000_000_000 + np.arange(len(rec.t), dtype=np.int64) * 10_000_000
    tdt = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
    truth_info = StreamInfo.for_array("sim/chain.truth", TRUTH, tdt, rate_hz=100.0)
    infos = [raw_imu_info(f"sim/imu.raw:{n}", n, 100.0) for n in chain.imu_names]
    w = SessionWriter(path)
    try:
        for a in range(0, len(t_host), 50):
            b = slice(a, a + 50)
            for j, info in enumerate(infos):
                raw = np.zeros(len(t_host[b]), RAW_IMU_DTYPE)
                raw["t_host"], raw["t_sensor"] = t_host[b], t_host[b] - 123
                raw["acc"], raw["gyr"] = rec.acc[b, j], rec.gyr[b, j]
                w.write_block(make_block(info, raw, t_host=int(t_host[a])), int(t_host[a]))
            truth = np.zeros(len(t_host[b]), tdt)
            truth["t_host"], truth["q_rel"], truth["angle"] = t_host[b], rec.q_rel[b], rec.joint_angles[b]
            w.write_block(make_block(truth_info, truth, t_host=int(t_host[a])), int(t_host[a]))
    finally:
        w.close()
    return np.concatenate([rec.acc, rec.gyr], axis=2).reshape(len(rec.t), -1)


def test_eval_reads_an_mcap_session_with_truth(model_and_data: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    from pipeline.evaluation.imu_dataset import ImuDataset, dataset_from_session

    model, _ = model_and_data
    mcap = tmp_path / "sim.mcap"
    imu = _write_sim_session(mcap, 42, 7.0)
    card = load_card(model)
    ds = dataset_from_session(mcap, card.imus, card.chain, ("seg1", "seg2", "seg3"))
    assert ds.imu.shape == (1, 700, 12) and ds.rate_hz == pytest.approx(100.0)
    # arm3's IMUs are exactly seg1 and seg3, in that order: resampling onto equal stamps is exact
    assert np.array_equal(ds.imu[0], imu.astype(np.float32))
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(mcap), "--json", "--warmup-s", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    ref = evaluate(OnnxObserverModel(model), ImuDataset(**{**ds.__dict__, "rate_hz": 100.0}), 2.0)
    assert json.loads(out.stdout)["per_joint"] == {b: s.as_dict() for b, s in ref.stats.items()}


def test_eval_picks_the_model_imus_from_a_larger_dataset(model_and_data: tuple[Path, Path]) -> None:
    from pipeline.evaluation.imu_dataset import ImuDataset

    model, data = model_and_data
    ds = load_dataset(data)
    s, t = ds.imu.shape[:2]
    per = ds.imu.reshape(s, t, 2, 6)
    extra = np.random.default_rng(0).normal(size=(s, t, 1, 6)).astype(np.float32)
    wide = ImuDataset(**{**ds.__dict__, "imu": np.concatenate([per[:, :, 1:], extra, per[:, :, :1]],
                                                              axis=2).reshape(s, t, 18),
                         "imus": ("seg3", "other", "seg1")})
    m = OnnxObserverModel(model)
    a, b = evaluate(m, ds, 2.0), evaluate(m, wide, 2.0)
    assert all(a.stats[k] == b.stats[k] for k in a.stats)


def test_predictions_of_true_outputs_are_the_truth(model_and_data: tuple[Path, Path]) -> None:
    """predictions() turns outputs back into q_rel: the truth encoded as outputs comes back."""
    from pipeline.evaluation.joint_errors import rotation_error_deg
    from pipeline.evaluation.observer_eval import predictions
    from pipeline.kinematics.chain import load_chain
    from tools.training.data import encode_targets

    model, data = model_and_data
    card = load_card(model)
    chain = load_chain(REPO / card.chain)
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
    model, data = model_and_data
    out_npz = tmp_path / "pred.npz"
    out = subprocess.run(IMUFLOW + ["eval", str(model), str(data), "--predictions", str(out_npz)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    pred = np.load(out_npz)
    ds = load_dataset(data)
    assert pred["q_rel"].shape == ds.q_rel.shape and list(pred["bodies"]) == list(ds.bodies)
    result = evaluate(OnnxObserverModel(model), ds)
    np.testing.assert_allclose(pred["q_rel"], result.q_rel, atol=1e-6, equal_nan=True)
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
