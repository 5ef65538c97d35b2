"""Training loop: random windows of cached sequences, checkpoints, resume, per-epoch log and plot."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.estimation.constraint_prior import PRIOR_KINDS, prior_features
from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.kinematics.chain import load_chain
from tools.training.data import REPO, cached, encode_targets
from tools.training.losses import output_errors, scaled_loss
from tools.training.network import Observer, state_from_onnx
from tools.training.problem import Problem, get_problem, with_root_encoding

log = logging.getLogger("imuflow.training.trainer")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (stored in the run dir and the model card)."""

    problem: str = "arm3-sparse"
    rate_hz: float = 100.0
    train_sequences: int = 1000
    val_sequences: int = 16
    sequence_s: float = 60.0
    window_s: float = 10.0
    batch: int = 16
    hidden: int = 128
    layers: int = 2
    lr: float = 2e-3
    lr_min: float = 1e-4
    epochs: int = 60
    loss: str = "plain"
    beta: float = 0.0
    detach_weights: bool = True
    grad_clip: float = 1.0
    seed: int = 0
    warmup_s: float = 5.0
    checkpoint_every: int = 50       # optimizer steps
    threads: int = 1
    data_dir: str = "/tmp/imuflow-train/data"
    prior: str = ""  # a PRIOR_KINDS name ("constraint", ...): a hybrid correcting that estimate
    init_from: str = ""  # a checkpoint whose weights (and input normalisation) start this run
    root_encoding: str = ""  # the root output's encoding, "quat" or "up"; "" the problem's


def _normalisation(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std (F,) of training input x (S, T, F)."""
    flat = x[:, ::10].reshape(-1, x.shape[-1]).astype(np.float64)
    return torch.tensor(flat.mean(0)), torch.tensor(np.maximum(flat.std(0), 1e-3))


class Trainer:
    """One training run in ``run_dir``: ``checkpoint.pt``, ``log.jsonl``, ``curves.png``, ``config.json``."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, resume: bool = False) -> None:
        if cfg.prior and cfg.prior not in PRIOR_KINDS:
            raise ValueError(f"--prior '{cfg.prior}': one of {list(PRIOR_KINDS)} (or none)")
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        self.problem: Problem = with_root_encoding(get_problem(cfg.problem), cfg.root_encoding)
        self.chain = load_chain(REPO / self.problem.chain)
        self.encodings = [e for _, e in self.problem.outputs]
        data = Path(cfg.data_dir)
        tag = f"{self.problem.name}_{int(cfg.sequence_s)}s"
        train = cached(data / f"{tag}_train{cfg.train_sequences}.npz", self.problem, "train",
                       cfg.train_sequences, cfg.sequence_s, cfg.rate_hz)
        val = cached(data / f"{tag}_val{cfg.val_sequences}.npz", self.problem, "val",
                     cfg.val_sequences, cfg.sequence_s, cfg.rate_hz)
        x, vx = train.imu, val.imu
        if cfg.prior:
            x = np.concatenate([x, self._prior(train, data / f"{tag}_train{cfg.train_sequences}")],
                               axis=-1)
            vx = np.concatenate([vx, self._prior(val, data / f"{tag}_val{cfg.val_sequences}")],
                                axis=-1)
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(encode_targets(self.problem, self.chain, train.q_rel))
        self.vx = torch.from_numpy(vx)
        self.vy = torch.from_numpy(encode_targets(self.problem, self.chain, val.q_rel))
        mean, std = _normalisation(x)
        n_out = self.y.shape[-1]
        torch.manual_seed(cfg.seed)  # before the model: its initial weights come from the seed
        self.model = Observer(self.x.shape[-1], n_out, cfg.hidden, cfg.layers, mean, std,
                              prior_at=train.imu.shape[-1] if cfg.prior else -1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.epoch, self.step, self.history = 0, 0, []
        self.train_s = 0.0          # training wall time so far, s (kept across resumes)
        self.max_minutes = math.inf
        self.rng = np.random.default_rng(cfg.seed)
        ck = self.run_dir / "checkpoint.pt"
        if resume and ck.exists():
            self._load(ck)
        else:
            if resume:
                log.warning("--resume: no checkpoint in %s, starting fresh", self.run_dir)
            if cfg.init_from:
                self._init_weights(Path(cfg.init_from))
        (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")

    def _prior(self, data: ImuDataset, stem: Path) -> np.ndarray:
        """The constraint prior (S, T, n_out) of a cached set, computed once and cached."""
        enc = f"-root-{self.cfg.root_encoding}" if self.cfg.root_encoding else ""
        path = stem.with_name(f"{stem.name}_prior-{self.cfg.prior}{enc}.npy")
        if path.exists():
            prior = np.load(path)
            if prior.shape[:2] == data.imu.shape[:2]:
                return prior
        log.info("computing the %s prior of %s", self.cfg.prior, stem.name)
        prior = prior_features(self.chain, list(self.problem.imus), data.rate_hz,
                               self.problem.outputs, data.imu, kind=self.cfg.prior)
        np.save(path, prior)
        return prior

    # ------------------------------------------------------------------ checkpoints
    def _save(self, path: Path | None = None) -> None:
        """Write the run state atomically (model, optimizer, counters, rng, history)."""
        path = path or self.run_dir / "checkpoint.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "model_config": self.model.config(),
                    "opt": self.opt.state_dict(), "epoch": self.epoch, "step": self.step,
                    "train_s": self.train_s,
                    "max_minutes": None if math.isinf(self.max_minutes) else self.max_minutes,
                    "history": self.history, "rng": self.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "config": asdict(self.cfg)}, tmp)
        tmp.replace(path)

    def _init_weights(self, path: Path) -> None:
        """Start from the model weights of another run's checkpoint or of an exported ONNX
        model (fine-tuning)."""
        if not path.is_file():
            raise FileNotFoundError(f"--init-from {path}: no such checkpoint; give a run's "
                                    "best.pt or checkpoint.pt, or a model's .onnx")
        if path.suffix == ".onnx":
            config, state = state_from_onnx(path)
            ck = {"model_config": config, "model": state, "epoch": "exported"}
        else:
            ck = torch.load(path, weights_only=False)
        if ck["model_config"] != self.model.config():
            raise ValueError(f"--init-from {path}: its network {ck['model_config']} differs from "
                             f"this run's {self.model.config()}; give the same --hidden, --layers "
                             "and --prior")
        self.model.load_state_dict(ck["model"])
        log.info("initial weights from %s (epoch %s)", path, ck["epoch"])

    def _load(self, path: Path) -> None:
        """Restore a run saved by ``_save``."""
        ck = torch.load(path, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.epoch, self.step, self.history = ck["epoch"], ck["step"], ck["history"]
        self.train_s = ck.get("train_s", 0.0)
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed %s at epoch %d, step %d", path, self.epoch, self.step)

    # ------------------------------------------------------------------ loop
    def _lr(self, epoch_frac: float = 0.0) -> float:
        """Cosine decay from lr to lr_min over all epochs or the time budget, whichever ends first."""
        c = self.cfg
        frac = min(1.0, max((self.epoch + epoch_frac) / max(1, c.epochs),
                            self.train_s / 60.0 / self.max_minutes))
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * frac))

    def _batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """One epoch: every training sequence once, a random window each, in random order."""
        n, total = self.x.shape[0], self.x.shape[1]
        w = round(self.cfg.window_s * self.cfg.rate_hz)
        order = self.rng.permutation(n)
        starts = self.rng.integers(0, total - w + 1, n)
        return [(order[i:i + self.cfg.batch], starts[order[i:i + self.cfg.batch]])
                for i in range(0, n, self.cfg.batch)]

    def validate(self) -> dict[str, float]:
        """Angle-error percentiles (deg) over all output bodies of the validation set after warm-up."""
        self.model.eval()
        with torch.no_grad():
            y, _ = self.model(self.vx, self.model.initial_state(self.vx.shape[0]))
            e = output_errors(y, self.vy, self.encodings)
        self.model.train()
        k = round(self.cfg.warmup_s * self.cfg.rate_hz)
        e = torch.rad2deg(e[:, k:]).numpy()
        out = {"val_mean_deg": float(e.mean())}
        for p in (50, 90, 95, 99):
            out[f"val_p{p}_deg"] = float(np.percentile(e, p))
        for j, (body, _) in enumerate(self.problem.outputs):
            out[f"val_mean_deg_{body}"] = float(e[..., j].mean())
        return out

    def train(self, max_minutes: float = math.inf) -> None:
        """Run epochs until ``cfg.epochs`` (or max_minutes), checkpointing and logging."""
        c = self.cfg
        self.max_minutes = max_minutes
        w = round(c.window_s * c.rate_hz)
        while self.epoch < c.epochs and self.train_s / 60.0 < max_minutes:
            losses, t0 = [], time.monotonic()
            batches = self._batches()
            bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{c.epochs}", unit="batch",
                       mininterval=5.0)
            for b, (idx, starts) in enumerate(bar):
                t_b = time.monotonic()
                for g in self.opt.param_groups:
                    g["lr"] = self._lr(b / len(batches))
                rows = torch.as_tensor(idx)[:, None]
                cols = torch.as_tensor(starts)[:, None] + torch.arange(w)[None, :]
                xb, yb = self.x[rows, cols], self.y[rows, cols]
                y, _ = self.model(xb, self.model.initial_state(len(idx)))
                loss = scaled_loss(output_errors(y, yb, self.encodings), c.loss, c.beta,
                                   c.detach_weights)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                self.opt.step()
                self.step += 1
                self.train_s += time.monotonic() - t_b
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if self.step % c.checkpoint_every == 0:
                    self._save()
                if self.train_s / 60.0 >= max_minutes:
                    break
            self.epoch += 1
            rec = {"epoch": self.epoch, "step": self.step, "lr": self._lr(),
                   "loss": float(np.mean(losses)), "epoch_s": time.monotonic() - t0}
            rec.update(self.validate())
            self.history.append(rec)
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            log.info("epoch %d: loss %.4f, val mean %.2f p99 %.2f deg", self.epoch, rec["loss"],
                     rec["val_mean_deg"], rec["val_p99_deg"])
            self._save()
            if not self.history or rec["val_mean_deg"] <= min(h["val_mean_deg"] for h in self.history):
                self._save(self.run_dir / "best.pt")
            plot_history(self.history, self.run_dir / "curves.png", title=self._title())
        log.info("stopped after epoch %d, step %d, %.1f min of training", self.epoch, self.step,
                 self.train_s / 60.0)

    def _title(self) -> str:
        c = self.cfg
        return f"{c.problem}: {c.loss} beta={c.beta} GRU {c.layers}x{c.hidden}"


def plot_history(history: list[dict], path: Path, title: str = "") -> None:
    """PNG of training loss and validation error percentiles (deg) per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["loss"] for h in history])
    a.set_xlabel("epoch")
    a.set_ylabel("training loss (rad, weighted)")
    a.set_yscale("log")
    for p in (50, 90, 95, 99):
        b.plot(ep, [h[f"val_p{p}_deg"] for h in history], label=f"p{p}")
    b.set_xlabel("epoch")
    b.set_ylabel("validation angle error (deg)")
    b.set_yscale("log")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
