"""ONNX export of a trained observer, check against PyTorch, held-out evaluation, model card."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.evaluation.model_card import ModelCard, OutputBody, StateTensor, sha256_of, write_card
from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate
from pipeline.runtime.atomic_file import atomic_text
from tools.training.data import REPO, SEEDS, cached
from tools.training.network import Observer
from tools.training.problem import Problem, get_problem, with_root_encoding

log = logging.getLogger("imuflow.training.export")

OPSET = 17


def load_checkpoint(path: Path) -> tuple[Observer, dict]:
    """The model (eval mode) and the raw checkpoint dict of a training checkpoint."""
    ck = torch.load(path, weights_only=False)
    model = Observer(**ck["model_config"])
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def export_onnx(model: Observer, path: Path) -> None:
    """Write ``model`` as ONNX: imu (batch, T, F), h0 (layers, batch, hidden) -> y, hn.

    Uses the TorchScript exporter (``dynamo=False``, still shipped in torch 2.13 with a
    deprecation warning): it handles nn.GRU with dynamic batch and T axes in one ONNX GRU op.
    """
    model = model.eval()
    x = torch.zeros(1, 4, model.n_features)
    h = model.initial_state(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x, h), str(path), input_names=["imu", "h0"], output_names=["y", "hn"],
            dynamic_axes={"imu": {0: "batch", 1: "T"}, "h0": {1: "batch"},
                          "y": {0: "batch", 1: "T"}, "hn": {1: "batch"}},
            opset_version=OPSET, dynamo=False)


def max_abs_diff_vs_torch(model: Observer, onnx_path: Path, x: np.ndarray, step: bool) -> float:
    """Max |y_onnx - y_torch| on input x (B, T, F); step=True feeds one sample at a time."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        y_t, _ = model(torch.from_numpy(x), model.initial_state(x.shape[0]))
    h = np.zeros((model.layers, x.shape[0], model.hidden), np.float32)
    if step:
        ys = []
        for k in range(x.shape[1]):
            y, h = sess.run(["y", "hn"], {"imu": x[:, k:k + 1], "h0": h})
            ys.append(y)
        y_o = np.concatenate(ys, axis=1)
    else:
        y_o, _ = sess.run(["y", "hn"], {"imu": x, "h0": h})
    return float(np.abs(y_o - y_t.numpy()).max())


def heldout_set(problem: Problem, n: int, duration_s: float, data_dir: Path) -> ImuDataset:
    """The held-out set (seeds from SEEDS['heldout']), cached in data_dir."""
    path = data_dir / f"{problem.name}_{int(duration_s)}s_heldout{n}.npz"
    return cached(path, problem, "heldout", n, duration_s)


def build_card(model: Observer, problem: Problem, name: str, onnx_file: Path, training: dict,
               heldout: dict, prior: str = "") -> ModelCard:
    """A model card for ``onnx_file`` (sha256 computed here)."""
    from pipeline.kinematics.chain import load_chain

    chain = load_chain(REPO / problem.chain)
    return ModelCard(
        name=name, onnx_file=onnx_file.name, sha256=sha256_of(onnx_file), chain=problem.chain,
        bodies=chain.body_names, imus=problem.imus, rate_hz=100.0, input_name="imu",
        state=(StateTensor("h0", "hn", (model.layers, model.hidden)),), output_name="y",
        outputs=tuple(OutputBody(b, e) for b, e in problem.outputs), training=training,
        heldout=heldout, path=onnx_file.with_suffix(".json"), prior=prior)


def train_command(cfg: dict, ck: dict, max_minutes: float | None = None) -> str:
    """The ``train_observer.py train`` command line that reruns a checkpoint's recipe."""
    skip = {"data_dir", "threads"}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in cfg.items()
                     if k not in skip and v != "")  # empty options (no prior, no init) left out
    budget = ck.get("max_minutes") or max_minutes
    tail = f" --max-minutes {budget:g}" if budget else ""
    return f"python tools/train_observer.py train --run-dir RUN {flags}{tail}"


def initial_weights(path: Path) -> dict:
    """The card entry of a fine-tune's starting weights: the file and its sha256 now, so that
    a later model written over the same path (a shipped model fine-tuned in place) still
    names the one it started from (git log finds it by the hash on its card)."""
    file = path if path.is_absolute() else REPO / path
    entry: dict = {"file": path.as_posix()}
    if file.exists():
        entry["sha256"] = sha256_of(file)
    return entry


def export_run(run_dir: Path, checkpoint: Path, out: Path, heldout_sequences: int = 32,
               heldout_s: float = 60.0, warmup_s: float = 5.0,
               max_minutes: float | None = None) -> ModelCard:
    """Export ``checkpoint`` to ``out``.onnx + ``out``.json with held-out figures; returns the card."""
    model, ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    # before anything is written: a fine-tune exported over its own starting file
    start = initial_weights(Path(cfg["init_from"])) if cfg.get("init_from") else None
    problem = with_root_encoding(get_problem(cfg["problem"]), cfg.get("root_encoding", ""))
    out = Path(out)
    onnx_path = out.with_suffix(".onnx")
    tmp = onnx_path.with_name(onnx_path.stem + ".export-tmp.onnx")
    export_onnx(model, tmp)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 50, model.n_features)) * 3).astype(np.float32)
    diffs = {"T=1 stepping": max_abs_diff_vs_torch(model, tmp, x, True),
             "T=50 block": max_abs_diff_vs_torch(model, tmp, x, False)}
    if max(diffs.values()) > 1e-4:
        raise RuntimeError(f"{tmp}: ONNX output differs from PyTorch: {diffs}")
    shutil.move(tmp, onnx_path)
    data = heldout_set(problem, heldout_sequences, heldout_s, Path(cfg["data_dir"]))
    hist = ck["history"][-1] if ck["history"] else {}
    training = {
        "generator": problem.describe(), "rate_hz": cfg["rate_hz"],
        "network": f"Linear({model.n_features}->{model.hidden})+GELU, GRU {model.layers}x"
                   f"{model.hidden}, MLP head; input normalisation inside the graph",
        "loss": {"kind": cfg["loss"], "beta": cfg["beta"], "detach_weights": cfg["detach_weights"],
                 "error": "angle (rad) per output body and time step; see tools/training/losses.py"},
        "optimizer": f"Adam lr {cfg['lr']} cosine to {cfg['lr_min']}, grad clip {cfg['grad_clip']}",
        "data": {"problem": cfg["problem"], "train_sequences": cfg["train_sequences"],
                 "sequence_s": cfg["sequence_s"],
                 "train_seeds": [SEEDS["train"], SEEDS["train"] + cfg["train_sequences"] - 1],
                 "window_s": cfg["window_s"], "batch": cfg["batch"]},
        "epochs": ck["epoch"], "steps": ck["step"], "checkpoint": checkpoint.name,
        "last_val": {k: float(f"{v:.4g}") for k, v in hist.items() if isinstance(v, float)},
        "onnx_vs_torch_max_abs_diff": diffs, "opset": OPSET,
        "train_minutes": round(ck.get("train_s", 0.0) / 60.0, 1),
        "command": train_command(cfg, ck, max_minutes),
        "note": "the learning-rate schedule follows the time budget when it ends before the "
                "epochs, so a rerun matches the recipe, not the weights bit for bit",
    }
    if start is not None:
        training["initial_weights"] = start
    prior = cfg.get("prior", "")
    if prior:
        training["network"] += (f"; hybrid: the output is the {prior} prior (input features "
                                f"{model.prior_at}..) plus the head's correction")
    card = build_card(model, problem, out.stem, onnx_path, training, {}, prior)
    write_card(card, card.path)
    result = evaluate(OnnxObserverModel(onnx_path), data, warmup_s)
    heldout = {
        "seeds": [int(data.seeds[0]), int(data.seeds[-1])], "sequences": data.n_sequences,
        "duration_s": heldout_s, "warmup_s": warmup_s, "noise": "pipeline.kinematics.imu_synth.ImuNoise()",
        "per_joint": {b: s.as_dict() for b, s in result.stats.items()},
        "command": f"python tools/train_observer.py heldout --problem {problem.name} "
                   f"--sequences {heldout_sequences} --duration-s {heldout_s:g} --out HELDOUT.npz && "
                   f"imuflow eval {onnx_path.as_posix()} HELDOUT.npz --warmup-s {warmup_s:g}",
    }
    card = build_card(model, problem, out.stem, onnx_path, training, heldout, prior)
    write_card(card, card.path)
    log.info("exported %s (%d bytes): %s", onnx_path, onnx_path.stat().st_size,
             {b: (round(s.mean_deg, 2), round(s.p99_deg, 2)) for b, s in result.stats.items()})
    return card


STRESS_SETTINGS = ("tools/training/problem.py Problem.stress_settings / stress_noise: root pitch "
                   "and roll to +-180 deg, motion to 1.6x the generator's fastest (1.0x), "
                   "rests 0.3-0.6 probability up to 6 s, IMU placement jitter 2x, sensor noise "
                   "1.5x, biases 1.7x, scale errors 2x")
CONSTRAINT_WHAT = ("nodes.constraint_observer (no training): a hinge with an IMU on both sides "
                   "from the hinge kernel (gyroscopes; the accelerations moved to the joint "
                   "centre, their angle in the hinge plane); two hinges "
                   "in a row from VQF 6D per IMU (body-worn tuning, vqf_tuning.py), the "
                   "heading offset from the 2-DoF joint constraint (streaming "
                   "qmt.headingCorrection) and the relative orientation; the root's "
                   "inclination from the orientation node (VQF 6D, the same tuning)")


def stress_set(problem: Problem, n: int, duration_s: float, data_dir: Path) -> ImuDataset:
    """The stress set (seeds from SEEDS['stress'], Problem.stress_settings), cached in data_dir."""
    return cached(data_dir / f"{problem.name}_{int(duration_s)}s_stress{n}.npz", problem,
                  "stress", n, duration_s)


def add_stress_and_baseline(card_file: Path, sequences: int = 32, duration_s: float = 60.0,
                            warmup_s: float = 5.0, data_dir: Path | None = None) -> dict:
    """Add the card's ``stress`` section (the model on the stress set) and ``baselines``
    (the constraint observer on the card's held-out and stress sets); returns the card dict."""
    card = json.loads(card_file.read_text())
    problem = get_problem(card["training"]["data"]["problem"])
    data_dir = Path(data_dir) if data_dir else card_file.parent
    onnx = card_file.with_name(card["onnx_file"])
    held = card["heldout"]
    heldout = heldout_set(problem, held["sequences"], held["duration_s"], data_dir)
    stress = stress_set(problem, sequences, duration_s, data_dir)
    result = evaluate(OnnxObserverModel(onnx), stress, warmup_s)
    card["stress"] = {
        "seeds": [int(stress.seeds[0]), int(stress.seeds[-1])], "sequences": sequences,
        "duration_s": duration_s, "warmup_s": warmup_s, "settings": STRESS_SETTINGS,
        "per_joint": {b: st.as_dict() for b, st in result.stats.items()},
        "command": f"python tools/train_observer.py heldout --problem {problem.name} --stress "
                   f"--sequences {sequences} --duration-s {duration_s:g} --out STRESS.npz && "
                   f"imuflow eval models/{onnx.name} STRESS.npz --warmup-s {warmup_s:g}",
    }

    def scored(data: ImuDataset, w: float) -> dict:
        res = evaluate_node("constraint_observer", data, w, progress=False)
        return {b: st.as_dict() for b, st in res.stats.items()}

    card["baselines"] = {"constraint_observer": {
        "what": CONSTRAINT_WHAT, "heldout": scored(heldout, held["warmup_s"]),
        "stress": scored(stress, warmup_s),
        "command": "imuflow eval constraint_observer HELDOUT.npz; "
                   "imuflow eval constraint_observer STRESS.npz"}}
    with atomic_text(card_file) as f:
        f.write(json.dumps(card, indent=1) + "\n")
    return card
