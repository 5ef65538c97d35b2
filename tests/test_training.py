"""Training end to end on a tiny problem: checkpoints, resume, ONNX export equal to PyTorch, card."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.evaluation.model_card import load_card, sha256_of
from tools.training.data import SEEDS, encode_targets, generate
from tools.training.export import export_onnx, export_run, initial_weights, load_checkpoint
from tools.training.network import Observer, state_from_onnx
from tools.training.problem import get_problem
from tools.training.trainer import TrainConfig, Trainer

# lr == lr_min: a flat schedule, so a run of 2 epochs resumed to 3 takes the same steps as a
# straight run of 3 (the cosine schedule would otherwise depend on the planned epoch count)
TINY = {"problem": "arm3-sparse", "train_sequences": 4, "val_sequences": 2, "sequence_s": 6.0,
        "window_s": 2.0, "batch": 2, "hidden": 8, "layers": 1, "epochs": 2, "checkpoint_every": 1,
        "warmup_s": 1.0, "lr": 5e-3, "lr_min": 5e-3, "threads": 1}


def _state(trainer: Trainer) -> tuple[dict, dict]:
    return trainer.model.state_dict(), trainer.opt.state_dict()


def _assert_same_tensors(a, b, what: str) -> None:
    """Equal nested dicts/lists of tensors and numbers, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainConfig, Trainer]:
    """A finished 2-epoch run and its Trainer; tests that change the run copy it first."""
    root = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(**TINY, data_dir=str(root / "data"))
    trainer = Trainer(cfg, root / "run")
    trainer.train()
    return root / "run", cfg, trainer


def test_tiny_run_writes_checkpoints_log_and_plot(tiny_run: tuple[Path, TrainConfig, Trainer]
                                                  ) -> None:
    run, _cfg, _ = tiny_run
    for name in ("checkpoint.pt", "best.pt", "config.json", "log.jsonl", "curves.png"):
        assert (run / name).stat().st_size > 0, name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[-1]["step"] == 4  # 4 sequences, batch 2, 2 epochs
    for key in ("loss", "val_p50_deg", "val_p90_deg", "val_p95_deg", "val_p99_deg"):
        assert np.isfinite(log[-1][key])
    assert (run.parent / "data" / "arm3-sparse_6s_train4.npz").exists()


def test_training_overfits_one_sequence(tmp_path: Path) -> None:
    """Every step changes every weight, and on one sequence (validated on itself) the
    validation error falls to less than half of the untrained model's, the loss with it."""
    problem = get_problem("arm3-sparse")
    one = generate(problem, [SEEDS["train"]], 4.0, progress=False)
    data = tmp_path / "data"  # the cache files the trainer reads: 8 copies to train, 1 to check
    replace(one, imu=np.repeat(one.imu, 8, 0), q_rel=np.repeat(one.q_rel, 8, 0),
            seeds=np.repeat(one.seeds, 8)).save(data / "arm3-sparse_4s_train8.npz")
    one.save(data / "arm3-sparse_4s_val1.npz")
    cfg = TrainConfig(problem="arm3-sparse", train_sequences=8, val_sequences=1, sequence_s=4.0,
                      window_s=2.0, batch=1, hidden=16, layers=1, epochs=5, lr=1e-2, lr_min=1e-2,
                      warmup_s=1.0, checkpoint_every=1000, data_dir=str(data))
    t = Trainer(cfg, tmp_path / "run")
    assert torch.equal(t.vx[0], t.x[0])  # validated on the sequence it trains on
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    untrained = t.validate()["val_mean_deg"]
    t.train()
    after = t.model.state_dict()
    for name, p in t.model.named_parameters():
        assert not torch.equal(p.detach(), before[name]), f"{name} never changed"
    assert torch.equal(after["in_mean"], before["in_mean"])  # buffers are no weights
    val = [h["val_mean_deg"] for h in t.history]
    loss = [h["loss"] for h in t.history]
    assert t.step == 40 and len(val) == 5
    assert val[-1] < 0.5 * untrained, (untrained, val)
    assert loss[-1] < 0.5 * loss[0], loss


def test_resume_reproduces_a_straight_run(tiny_run: tuple[Path, TrainConfig, Trainer],
                                          tmp_path: Path) -> None:
    """2 epochs, then resumed to 3, equal a straight 3-epoch run bit for bit (same seed,
    one thread): the checkpoint restores the model, the optimizer and the random streams."""
    run, cfg, trainer = tiny_run
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run, resumed_dir)
    more = replace(cfg, epochs=3)
    t = Trainer(more, resumed_dir, resume=True)
    assert (t.epoch, t.step) == (2, 4)
    model, opt = _state(trainer)  # the run's state in memory when it finished
    _assert_same_tensors(t.model.state_dict(), model, "model after resume")
    _assert_same_tensors(t.opt.state_dict(), opt, "optimizer after resume")
    t.train()
    log = [json.loads(line) for line in (resumed_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["step"] == 6
    straight = Trainer(more, tmp_path / "straight")
    straight.train()
    _assert_same_tensors(t.model.state_dict(), straight.model.state_dict(), "model")
    _assert_same_tensors(t.opt.state_dict(), straight.opt.state_dict(), "optimizer")
    assert [h["loss"] for h in t.history] == [h["loss"] for h in straight.history]
    assert [h["val_mean_deg"] for h in t.history] == [h["val_mean_deg"] for h in straight.history]
    # and the third epoch did something: a resume that lost the weights would not get here
    assert not torch.equal(t.model.state_dict()["head.2.weight"], model["head.2.weight"])


def test_export_gives_a_loadable_model_and_card(tiny_run: tuple[Path, TrainConfig, Trainer],
                                                tmp_path: Path) -> None:
    run, _, _ = tiny_run
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


def test_a_run_with_the_up_root_encoding_exports_an_up_card(tmp_path: Path) -> None:
    """``--root-encoding up``: the root is trained and exported as its vertical (3 values),
    the card says so, and its command reruns the recipe."""
    cfg = TrainConfig(**{**TINY, "epochs": 1}, root_encoding="up",
                      prior="constraint-body-vqf-root2s", data_dir=str(tmp_path / "data"))
    Trainer(cfg, tmp_path / "run").train()
    export_run(tmp_path / "run", tmp_path / "run" / "best.pt", tmp_path / "up",
               heldout_sequences=2, heldout_s=6.0, warmup_s=1.0)
    card = load_card(tmp_path / "up.onnx")
    assert [o.encoding for o in card.outputs] == ["up", "sincos", "sincos"]
    assert card.n_outputs == 7 and card.n_features == 12 + 7
    assert "--root-encoding up" in card.training["command"]
    assert np.isfinite(card.heldout["per_joint"]["seg1"]["mean_deg"])


def test_root_encoding_is_checked() -> None:
    from tools.training.problem import with_root_encoding

    assert with_root_encoding(get_problem("arm3-wide"), "").outputs[0] == ("seg1", "quat")
    assert with_root_encoding(get_problem("arm3-wide"), "up").outputs[0] == ("seg1", "up")
    with pytest.raises(ValueError, match="'quat' or 'up'"):
        with_root_encoding(get_problem("arm3-wide"), "euler")
    with pytest.raises(ValueError, match="does not output its root 'thigh'"):
        with_root_encoding(get_problem("knee-field"), "up")


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


@pytest.mark.parametrize("prior_at", [-1, 4])
def test_weights_read_back_from_onnx_give_the_same_network(prior_at: int, tmp_path: Path) -> None:
    """``--init-from MODEL.onnx``: the exported initializers (ONNX gate order z, r, h) are put
    back into PyTorch's layout (r, z, n), normalisation included; the network is the same."""
    torch.manual_seed(5)
    model = Observer(12, 4, 16, 2, torch.randn(12), torch.rand(12) + 0.5, prior_at=prior_at)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # the hybrid's head starts at zero otherwise
    model.eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    config, state = state_from_onnx(path)
    assert config == model.config()
    back = Observer(**config)
    back.load_state_dict(state)
    x = torch.from_numpy((np.random.default_rng(2).normal(size=(2, 40, 12)) * 3).astype(np.float32))
    with torch.no_grad():
        (y0, h0), (y1, h1) = model(x, model.initial_state(2)), back(x, back.initial_state(2))
    assert (y0 - y1).abs().max() < 1e-5 and (h0 - h1).abs().max() < 1e-5


def test_a_run_starts_from_an_exported_model(tiny_run: tuple[Path, TrainConfig, Trainer],
                                              tmp_path: Path) -> None:
    """Fine-tuning a shipped model: a run with ``init_from`` an .onnx file starts from its
    weights, and a model of another size is refused with the fix."""
    run, cfg, trainer = tiny_run
    path = tmp_path / "tiny.onnx"
    export_onnx(trainer.model.eval(), path)
    tuned = Trainer(replace(cfg, init_from=str(path), epochs=0), tmp_path / "tuned")
    _assert_same_tensors(tuned.model.state_dict(), state_from_onnx(path)[1], "weights")
    with pytest.raises(ValueError, match="give the same --hidden"):
        Trainer(replace(cfg, init_from=str(path), hidden=12), tmp_path / "other")


def test_a_fine_tune_exported_over_its_start_names_the_start(
        tiny_run: tuple[Path, TrainConfig, Trainer], tmp_path: Path) -> None:
    """Fine-tuned in place (exported over the .onnx it started from), the card still names
    the starting file's hash, not its own."""
    _, cfg, trainer = tiny_run
    path = tmp_path / "shipped.onnx"
    export_onnx(trainer.model.eval(), path)
    before = sha256_of(path)
    tuned = Trainer(replace(cfg, init_from=str(path), epochs=1), tmp_path / "tuned")
    tuned.train()
    card = export_run(tmp_path / "tuned", tmp_path / "tuned" / "checkpoint.pt",
                      path.with_suffix(""), heldout_sequences=2, heldout_s=6.0, warmup_s=1.0)
    assert card.training["initial_weights"]["sha256"] == before != card.sha256


def test_card_names_a_fine_tunes_starting_weights_by_hash(tmp_path: Path) -> None:
    """A fine-tune's card keeps the hash of the file it started from, which a model written
    over the same path later cannot change; a file that is gone is named without one."""
    start = tmp_path / "start.onnx"
    start.write_bytes(b"weights")
    assert initial_weights(start) == {"file": start.as_posix(), "sha256": sha256_of(start)}
    assert initial_weights(tmp_path / "gone.onnx") == {"file": (tmp_path / "gone.onnx").as_posix()}


def test_checkpoint_holds_the_trained_model(tiny_run: tuple[Path, TrainConfig, Trainer]) -> None:
    """load_checkpoint gives the weights the run ended with, not the initial ones."""
    run, cfg, trainer = tiny_run
    m, ck = load_checkpoint(run / "checkpoint.pt")
    _assert_same_tensors(m.state_dict(), trainer.model.state_dict(), "checkpoint model")
    assert ck["epoch"] == 2 and ck["step"] == 4
    fresh = Trainer(replace(cfg, epochs=0), run.parent / "fresh").model  # same seed, untrained
    x = torch.randn(1, 5, 12)
    y = m(x, m.initial_state(1))[0]
    assert torch.equal(y, trainer.model.eval()(x, trainer.model.initial_state(1))[0])
    assert not torch.allclose(y, fresh(x, fresh.initial_state(1))[0])


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


def test_compare_plots_runs_side_by_side(tiny_run: tuple[Path, TrainConfig, Trainer],
                                        tmp_path: Path) -> None:
    from tools.training.compare import compare_runs

    run, _, _ = tiny_run
    table = compare_runs([run, run], tmp_path / "cmp.png")
    assert len(table.splitlines()) == 3 and "plain" in table.splitlines()[1]
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
