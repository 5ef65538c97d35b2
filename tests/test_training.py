"""Training end to end on a tiny problem: checkpoints, resume, ONNX export equal to PyTorch, card."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.evaluation.model_card import load_card
from tools.training.data import SEEDS, encode_targets, generate
from tools.training.export import export_onnx, export_run, load_checkpoint
from tools.training.network import Observer
from tools.training.problem import get_problem
from tools.training.trainer import TrainConfig, Trainer

TINY = {"problem": "arm3-sparse", "train_sequences": 4, "val_sequences": 2, "sequence_s": 6.0,
            "window_s": 2.0, "batch": 2, "hidden": 8, "layers": 1, "epochs": 2, "checkpoint_every": 1,
            "warmup_s": 1.0}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainConfig]:
    root = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(**TINY, data_dir=str(root / "data"))
    Trainer(cfg, root / "run").train()
    return root / "run", cfg


def test_tiny_run_writes_checkpoints_log_and_plot(tiny_run: tuple[Path, TrainConfig]) -> None:
    run, _cfg = tiny_run
    for name in ("checkpoint.pt", "best.pt", "config.json", "log.jsonl", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[-1]["step"] == 4  # 4 sequences, batch 2, 2 epochs
    for key in ("loss", "val_p50_deg", "val_p90_deg", "val_p95_deg", "val_p99_deg"):
        assert np.isfinite(log[-1][key])
    assert (run.parent / "data" / "arm3-sparse_6s_train4.npz").exists()


def test_resume_continues_from_checkpoint(tiny_run: tuple[Path, TrainConfig]) -> None:
    run, cfg = tiny_run
    more = replace(cfg, epochs=3)
    t = Trainer(more, run, resume=True)
    assert (t.epoch, t.step) == (2, 4)
    t.train()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["step"] == 6


def test_export_gives_a_loadable_model_and_card(tiny_run: tuple[Path, TrainConfig],
                                                tmp_path: Path) -> None:
    run, _ = tiny_run
    card = export_run(run, run / "checkpoint.pt", tmp_path / "tiny", heldout_sequences=2,
                      heldout_s=6.0, warmup_s=1.0)
    loaded = load_card(tmp_path / "tiny.onnx")  # checks schema and sha256
    assert loaded.imus == ("seg1", "seg3") and loaded.n_outputs == 8
    assert [o.encoding for o in loaded.outputs] == ["quat", "sincos", "sincos"]
    assert loaded.heldout["seeds"][0] == SEEDS["heldout"]
    assert set(loaded.heldout["per_joint"]) == {"seg1", "seg2", "seg3"}
    assert loaded.training["loss"]["kind"] == "plain"
    assert card.sha256 == loaded.sha256
    sess = ort.InferenceSession(str(loaded.onnx_path))
    (layers, hidden), = [s.shape for s in loaded.state]
    y, hn = sess.run(["y", "hn"], {"imu": np.zeros((3, 7, 12), np.float32),
                                   "h0": np.zeros((layers, 3, hidden), np.float32)})
    assert y.shape == (3, 7, 8) and hn.shape == (layers, 3, hidden)


@pytest.mark.parametrize("cell", [(16, 2), (8, 1)])
def test_onnx_matches_torch_stepping_and_block(cell: tuple[int, int], tmp_path: Path) -> None:
    hidden, layers = cell
    torch.manual_seed(3)
    model = Observer(12, 8, hidden, layers, torch.randn(12), torch.rand(12) + 0.5).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path))
    x = (np.random.default_rng(1).normal(size=(2, 50, 12)) * 4).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = model(torch.from_numpy(x), model.initial_state(2))
    h0 = np.zeros((layers, 2, hidden), np.float32)
    y_blk, h_blk = sess.run(["y", "hn"], {"imu": x, "h0": h0})
    assert np.abs(y_blk - y_ref.numpy()).max() < 1e-5
    assert np.abs(h_blk - h_ref.numpy()).max() < 1e-5
    h, ys = h0, []
    for k in range(x.shape[1]):
        y, h = sess.run(["y", "hn"], {"imu": x[:, k:k + 1], "h0": h})
        ys.append(y)
    assert np.abs(np.concatenate(ys, 1) - y_ref.numpy()).max() < 1e-5
    assert np.abs(h - h_ref.numpy()).max() < 1e-5


def test_checkpoint_round_trip_gives_same_outputs(tiny_run: tuple[Path, TrainConfig]) -> None:
    run, _ = tiny_run
    m1, _ = load_checkpoint(run / "checkpoint.pt")
    m2, _ = load_checkpoint(run / "checkpoint.pt")
    x = torch.randn(1, 5, 12)
    assert torch.equal(m1(x, m1.initial_state(1))[0], m2(x, m2.initial_state(1))[0])


def test_targets_encode_true_hinge_angles_and_inclination() -> None:
    problem = get_problem("arm3-sparse")
    ds = generate(problem, [SEEDS["train"]], 2.0, noisy=False, progress=False)
    from pipeline.evaluation.joint_errors import inclination_error_deg
    from pipeline.kinematics.chain import load_chain
    chain = load_chain(Path(__file__).resolve().parents[1] / problem.chain)
    y = encode_targets(problem, chain, ds.q_rel)[0]
    assert y.shape == (200, 8)
    assert np.allclose(np.linalg.norm(y[:, :4], axis=1), 1, atol=1e-5)
    assert np.all(inclination_error_deg(y[:, :4], ds.q_rel[0, :, 0]) < 0.05)
    assert np.allclose(y[:, 4] ** 2 + y[:, 5] ** 2, 1, atol=1e-5)


def test_compare_plots_runs_side_by_side(tiny_run: tuple[Path, TrainConfig], tmp_path: Path) -> None:
    from tools.training.compare import compare_runs

    run, _ = tiny_run
    table = compare_runs([run, run], tmp_path / "cmp.png")
    assert len(table.splitlines()) == 3 and "plain" in table.splitlines()[1]
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
