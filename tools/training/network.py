"""The recurrent observer: input normalisation, GRU, linear head; raw SI IMU data in."""

from __future__ import annotations

import torch
from torch import nn


class Observer(nn.Module):
    """GRU observer: ``imu`` (B, T, F) float32 raw SI (m/s^2, rad/s, sensor frame) -> ``y`` (B, T, n_out).

    The per-feature normalisation (x - mean) / std is a fixed buffer inside the module, so the
    exported ONNX graph takes raw sensor values.
    """

    def __init__(self, n_features: int, n_outputs: int, hidden: int = 128, layers: int = 2,
                 in_mean: torch.Tensor | None = None, in_std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_features, self.n_outputs, self.hidden, self.layers = n_features, n_outputs, hidden, layers
        self.register_buffer("in_mean", torch.zeros(n_features) if in_mean is None else in_mean.float())
        self.register_buffer("in_std", torch.ones(n_features) if in_std is None else in_std.float())
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero hidden state (layers, batch, hidden)."""
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, imu: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One block: imu (B, T, F), h0 (layers, B, hidden) -> y (B, T, n_out), hn (layers, B, hidden)."""
        x = self.embed((imu - self.in_mean) / self.in_std)
        z, hn = self.gru(x, h0)
        return self.head(z), hn

    def config(self) -> dict:
        """Constructor arguments (without the normalisation buffers) for checkpoints."""
        return {"n_features": self.n_features, "n_outputs": self.n_outputs,
                "hidden": self.hidden, "layers": self.layers}
