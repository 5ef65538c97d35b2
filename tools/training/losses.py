"""Angle errors of the observer outputs and the softmax error-scaling losses.

Errors are rotation angles in rad, one per (sequence, time step, output body):
``sincos``: angle between the normalised (sin, cos) prediction and the truth;
``quat``: rotation angle between the normalised prediction and the truth (sign-free);
``up``: angle between the normalised predicted vertical and the true one (inclination error).
All use ``2 asin(|u - v| / 2)`` (chord to angle), which has finite gradients near zero error.

Losses reduce the N errors ``e`` of a batch to a scalar ``mean(w * e)``:

``plain``       w = 1.
``softmax``     unnormalised scaling, w = N * softmax(beta * e); beta in 1/rad.
``softmax_norm`` normalised scaling, w = N * softmax(beta * e / mean(e)); beta dimensionless.
``rank``        "soft percentile": the i-th smallest error (i = 0..N-1) gets
                w = N * softmax(beta * i / N) over ranks; beta dimensionless.

N * softmax(x) is computed as exp(x - max) / mean(exp(x - max)), so beta = 0 gives w = 1
exactly and every scaled loss equals the plain loss bit for bit. With ``detach=True``
(default) the weights are constants for backprop: the gradient is sum(w_i de_i) / N, a
re-weighting of the samples. With ``detach=False`` the gradient also flows through the softmax,
which (for beta > 0) pushes large errors down even harder.
"""

from __future__ import annotations

import torch

LOSS_KINDS = ("plain", "softmax", "softmax_norm", "rank")
_EPS = 1e-12


def _chord_angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Angle (...) rad from unit vectors (..., k): 2 asin(|u - v| / 2)."""
    d = torch.sqrt(torch.sum((u - v) ** 2, dim=-1) + _EPS)
    return 2.0 * torch.asin(torch.clamp(d / 2.0, max=1.0 - 1e-6))


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x / |x| over the last axis (safe at zero)."""
    return x / torch.sqrt(torch.sum(x * x, dim=-1, keepdim=True) + _EPS)


def output_errors(y: torch.Tensor, target: torch.Tensor, encodings: list[str]) -> torch.Tensor:
    """Angle errors (..., n_bodies) rad between predictions y and targets (..., n_out)."""
    errs, k = [], 0
    for enc in encodings:
        if enc == "sincos":
            errs.append(_chord_angle(_unit(y[..., k:k + 2]), target[..., k:k + 2]))
            k += 2
        elif enc == "quat":
            p, t = _unit(y[..., k:k + 4]), target[..., k:k + 4]
            # rotation angle = 2 * (angle between the 4-vectors, sign-free): compare with the
            # target of the nearer sign (chosen without gradient, so no inf * 0 from the far one)
            sign = torch.where(torch.sum(p * t, dim=-1, keepdim=True) < 0, -1.0, 1.0).detach()
            errs.append(2.0 * _chord_angle(p, sign * t))
            k += 4
        elif enc == "up":
            errs.append(_chord_angle(_unit(y[..., k:k + 3]), target[..., k:k + 3]))
            k += 3
        else:
            raise ValueError(f"unknown output encoding '{enc}'; expected 'sincos', 'quat' "
                             "or 'up'")
    return torch.stack(errs, dim=-1)


def _n_softmax(x: torch.Tensor) -> torch.Tensor:
    """N * softmax(x) over a flat tensor, as exp(x - max) / mean(exp(x - max)); all-equal x -> ones."""
    z = torch.exp(x - x.max())
    return z / z.mean()


def scaling_weights(e: torch.Tensor, kind: str, beta: float) -> torch.Tensor:
    """Weights (N,) for the flat errors e (N,) rad; mean weight 1; beta = 0 gives exactly 1."""
    if kind == "plain":
        return torch.ones_like(e)
    if kind == "softmax":
        return _n_softmax(beta * e)
    if kind == "softmax_norm":
        return _n_softmax(beta * e / (e.mean() + _EPS))
    if kind == "rank":
        n = e.numel()
        ranks = torch.empty_like(e)
        ranks[torch.argsort(e.detach())] = torch.arange(n, dtype=e.dtype, device=e.device)
        return _n_softmax(beta * ranks / n)
    raise ValueError(f"unknown loss kind '{kind}'; expected one of {LOSS_KINDS}")


def scaled_loss(e: torch.Tensor, kind: str = "plain", beta: float = 0.0,
                detach: bool = True) -> torch.Tensor:
    """Scalar loss mean(w * e) over all errors e (any shape) rad with softmax error scaling."""
    flat = e.reshape(-1)
    if kind == "plain":
        return flat.mean()
    w = scaling_weights(flat, kind, beta)
    if detach:
        w = w.detach()
    return (w * flat).mean()
