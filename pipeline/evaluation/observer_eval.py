"""Offline evaluation of an ONNX observer model on sequences with ground truth.

The model runs in block mode through onnxruntime: each sequence in one call, hidden state
starting at zero (shapes from the model card). Outputs are decoded per the card
(``sincos`` -> hinge angle, ``quat`` -> q_rel; the root's quat is a heading-free inclination,
as is the quaternion of the root's ``up`` vector)
and compared with the truth: hinge bodies by signed hinge-angle error, the root by
inclination error, other quaternion bodies by rotation-angle error (all degrees).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.estimation.constraint_prior import prior_features
from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.evaluation.joint_errors import (
    ErrorStats,
    error_stats,
    hinge_error_deg,
    inclination_error_deg,
    rotation_error_deg,
    sincos_to_angle,
    truth_known,
)
from pipeline.evaluation.model_card import ENCODING_SIZE, ModelCard, load_card
from pipeline.kinematics.chain import Chain, load_chain
from pipeline.kinematics.fk import hinge_to_rel, rel_to_hinge
from pipeline.kinematics.quaternion import up_to_heading_free

log = logging.getLogger("imuflow.observer_eval")

REPO = Path(__file__).resolve().parents[2]


class OnnxObserverModel:
    """An ONNX observer and its card, run in block mode with onnxruntime on one thread."""

    def __init__(self, model: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.card: ModelCard = load_card(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.card.onnx_path), opts,
                                            providers=["CPUExecutionProvider"])

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero hidden-state inputs {name: (layers, batch, hidden) float32}."""
        return {s.input: np.zeros((s.shape[0], batch, s.shape[1]), np.float32) for s in self.card.state}

    def run(self, imu: np.ndarray, state: dict[str, np.ndarray] | None = None
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """imu (B, T, n_features) float32 raw SI (and the prior, see the card) -> y (B, T, n_out)
        and the next state {input name: array}."""
        imu = np.ascontiguousarray(imu, dtype=np.float32)
        if imu.ndim != 3 or imu.shape[2] != self.card.n_features:
            raise ValueError(f"{self.card.name}: input must be (batch, T, {self.card.n_features}) "
                             f"for IMUs {self.card.imus}, got {imu.shape}")
        feeds = {self.card.input_name: imu}
        feeds.update(state if state is not None else self.zero_state(imu.shape[0]))
        names = [self.card.output_name] + [s.output for s in self.card.state]
        outs = self.session.run(names, feeds)
        return outs[0], {s.input: o for s, o in zip(self.card.state, outs[1:])}


def decode_outputs(card: ModelCard, y: np.ndarray) -> dict[str, np.ndarray]:
    """Split y (..., n_out) per body: sincos -> angle (...) rad, quat -> (..., 4) wxyz
    (unnormalised), up -> the heading-free root quaternion (..., 4) wxyz of that vertical."""
    out, k = {}, 0
    for o in card.outputs:
        n = ENCODING_SIZE[o.encoding]
        part = y[..., k:k + n]
        out[o.body] = (sincos_to_angle(part) if o.encoding == "sincos" else
                       up_to_heading_free(part) if o.encoding == "up" else part)
        k += n
    return out


def body_errors(card: ModelCard, chain: Chain, y: np.ndarray, q_rel: np.ndarray) -> dict[str, np.ndarray]:
    """Per output body, errors (...) deg of model outputs y (..., n_out) vs true q_rel (..., n, 4)."""
    est = decode_outputs(card, y)
    errs = {}
    for o in card.outputs:
        i = chain.index(o.body)
        q_true = np.asarray(q_rel[..., i, :], dtype=np.float64)
        if o.encoding == "sincos":
            true = rel_to_hinge(q_true, chain.rotations[i], chain.axes[i])
            errs[o.body] = hinge_error_deg(est[o.body], true)
        elif chain.parents[i] < 0:
            errs[o.body] = inclination_error_deg(est[o.body], q_true)
        else:
            errs[o.body] = rotation_error_deg(est[o.body], q_true)
    return errs


@dataclass(frozen=True)
class EvalResult:
    """Errors per output body (S, T) deg, statistics after warm-up, and the time axis (T,) s."""

    errors: dict[str, np.ndarray]
    stats: dict[str, ErrorStats]
    t_s: np.ndarray
    warmup_s: float
    q_rel: np.ndarray | None = None   # (S, T, n_bodies, 4) the model's estimates, see predictions


def model_input(card: ModelCard, chain: Chain, data: ImuDataset) -> np.ndarray:
    """The model's input (S, T, n_features) float32: the card's IMUs in its order (acc m/s^2
    then gyr rad/s each, sensor frame) and, for a hybrid, the constraint prior after them."""
    s_, t_ = data.imu.shape[:2]
    cols = [data.imus.index(n) for n in card.imus]
    imu = data.imu.reshape(s_, t_, len(data.imus), 6)[:, :, cols].reshape(s_, t_, -1)
    if card.prior:  # a hybrid model: the constraint estimate goes in beside the signals
        outputs = [(o.body, o.encoding) for o in card.outputs]
        imu = np.concatenate([imu, prior_features(chain, list(card.imus), card.rate_hz,
                                                  outputs, imu, kind=card.prior)], axis=-1)
    return imu


def evaluate(model: OnnxObserverModel, data: ImuDataset, warmup_s: float = 5.0,
             batch: int = 16) -> EvalResult:
    """Run ``model`` over every sequence of ``data`` and collect per-joint errors after warm-up."""
    card = model.card
    missing = [n for n in card.imus if n not in data.imus]
    if missing:
        raise ValueError(f"dataset IMUs {data.imus} do not match model '{card.name}': it needs "
                         f"{card.imus}, missing {missing}")
    if abs(data.rate_hz - card.rate_hz) > 1e-6:
        raise ValueError(f"dataset rate {data.rate_hz} Hz differs from model rate {card.rate_hz} Hz; "
                         "resample the data first")
    chain = load_chain(REPO / card.chain)
    if tuple(chain.body_names) != tuple(data.bodies):
        raise ValueError(f"dataset bodies {data.bodies} differ from chain {card.chain} "
                         f"bodies {chain.body_names}")
    s_ = data.imu.shape[0]
    imu = model_input(card, chain, data)
    ys = [model.run(imu[i:i + batch])[0] for i in range(0, s_, batch)]
    y = np.concatenate(ys)
    errs = body_errors(card, chain, y, data.q_rel)
    k = round(warmup_s * data.rate_hz)
    stats = {b: error_stats(e[:, k:], truth_known(data.q_rel[:, k:, chain.index(b)]))
             for b, e in errs.items()}
    return EvalResult(errs, stats, np.arange(data.imu.shape[1]) / data.rate_hz, warmup_s,
                      predictions(card, chain, y))


def predictions(card: ModelCard, chain: Chain, y: np.ndarray) -> np.ndarray:
    """(..., n_bodies, 4) w,x,y,z body-to-parent estimates (root: to earth) from outputs y.

    Hinges from their angle, quaternion outputs normalised; NaN for bodies the model does not
    estimate (e.g. the knee model's thigh, whose orientation comes from VQF).
    """
    est = decode_outputs(card, y)
    out = np.full((*y.shape[:-1], chain.n_bodies, 4), np.nan)
    for o in card.outputs:
        i = chain.index(o.body)
        if o.encoding == "sincos":
            out[..., i, :] = hinge_to_rel(est[o.body], chain.rotations[i], chain.axes[i])
        else:
            q = np.asarray(est[o.body], dtype=np.float64)
            out[..., i, :] = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return out


def plot_result(result: EvalResult, path: str | Path, title: str = "") -> None:
    """PNG: absolute error over time (median and 95% band over sequences) and its distribution."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.errors)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.6 * n), squeeze=False)
    k = round(result.warmup_s / (result.t_s[1] - result.t_s[0])) if len(result.t_s) > 1 else 0
    for row, (body, e) in enumerate(result.errors.items()):
        a = np.abs(e)  # NaN where the ground truth has gaps
        ax = axes[row, 0]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames with no truth at all
            band = np.nanpercentile(a, [2.5, 50.0, 97.5], axis=0)
        ax.fill_between(result.t_s, band[0], band[2], alpha=0.3, label="2.5..97.5 %")
        ax.plot(result.t_s, band[1], lw=1, label="median")
        ax.axvline(result.warmup_s, color="k", ls=":", lw=1)
        ax.set_ylabel(f"{body} |error| (deg)")
        ax.set_xlabel("time (s)")
        ax.legend(loc="upper right", fontsize=7)
        ax = axes[row, 1]
        after = a[:, k:].ravel()
        ax.hist(after[np.isfinite(after)], bins=100, density=True, log=True)
        s = result.stats[body]
        ax.set_title(f"mean {s.mean_deg:.2f}, p99 {s.p99_deg:.2f} deg", fontsize=9)
        ax.set_xlabel(f"{body} |error| after warm-up (deg)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = ["EvalResult", "OnnxObserverModel", "body_errors", "decode_outputs", "evaluate",
           "plot_result"]
