"""The recurrent observer: input normalisation, GRU, linear head; raw SI IMU data in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class Observer(nn.Module):
    """GRU observer: ``imu`` (B, T, F) float32 raw SI (m/s^2, rad/s, sensor frame) -> ``y`` (B, T, n_out).

    The per-feature normalisation (x - mean) / std is a fixed buffer inside the module, so the
    exported ONNX graph takes raw sensor values. ``prior_at`` >= 0 (a hybrid model): input
    features ``prior_at .. prior_at + n_outputs`` are a guess of the output (the constraint
    prior) and the network learns a correction added to it; the head's last layer starts at
    zero, so an untrained hybrid returns the prior.
    """

    def __init__(self, n_features: int, n_outputs: int, hidden: int = 128, layers: int = 2,
                 in_mean: torch.Tensor | None = None, in_std: torch.Tensor | None = None,
                 prior_at: int = -1) -> None:
        super().__init__()
        self.n_features, self.n_outputs, self.hidden, self.layers = n_features, n_outputs, hidden, layers
        self.prior_at = prior_at
        self.register_buffer("in_mean", torch.zeros(n_features) if in_mean is None else in_mean.float())
        self.register_buffer("in_std", torch.ones(n_features) if in_std is None else in_std.float())
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))
        if prior_at >= 0:
            if prior_at + n_outputs > n_features:
                raise ValueError(f"prior_at {prior_at} + {n_outputs} outputs > {n_features} features")
            nn.init.zeros_(self.head[2].weight)
            nn.init.zeros_(self.head[2].bias)

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero hidden state (layers, batch, hidden)."""
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, imu: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One block: imu (B, T, F), h0 (layers, B, hidden) -> y (B, T, n_out), hn (layers, B, hidden)."""
        x = self.embed((imu - self.in_mean) / self.in_std)
        z, hn = self.gru(x, h0)
        y = self.head(z)
        if self.prior_at >= 0:
            y = y + imu[..., self.prior_at:self.prior_at + self.n_outputs]
        return y, hn

    def config(self) -> dict:
        """Constructor arguments (without the normalisation buffers) for checkpoints."""
        return {"n_features": self.n_features, "n_outputs": self.n_outputs,
                "hidden": self.hidden, "layers": self.layers, "prior_at": self.prior_at}


def _torch_gates(w: np.ndarray) -> np.ndarray:
    """ONNX GRU gate blocks (z, r, h) along axis 0 in PyTorch's order (r, z, n)."""
    z, r, h = np.split(w, 3, axis=0)
    return np.concatenate([r, z, h], axis=0)


def state_from_onnx(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The constructor arguments and state dict of the :class:`Observer` exported to ``path``
    (a shipped model), read from the ONNX initializers as the compiled kernel reads them."""
    from nodes.observer.gru_step import read_gru_weights

    w = read_gru_weights(path)
    n_features = w.w_embed.shape[0]
    config = {"n_features": n_features, "n_outputs": w.n_outputs, "hidden": w.hidden,
              "layers": w.layers, "prior_at": w.prior_at}
    state = {"in_mean": w.mean, "in_std": w.std,
             "embed.0.weight": w.w_embed.T, "embed.0.bias": w.b_embed,
             "head.0.weight": w.w_head1.T, "head.0.bias": w.b_head1,
             "head.2.weight": w.w_head2.T, "head.2.bias": w.b_head2}
    for k in range(w.layers):
        state[f"gru.weight_ih_l{k}"] = _torch_gates(w.w_in[k].T)
        state[f"gru.weight_hh_l{k}"] = _torch_gates(w.w_hid[k].T)
        state[f"gru.bias_ih_l{k}"] = _torch_gates(w.b_in[k])
        state[f"gru.bias_hh_l{k}"] = _torch_gates(w.b_hid[k])
    return config, {k: torch.from_numpy(np.ascontiguousarray(v, np.float32))
                    for k, v in state.items()}
