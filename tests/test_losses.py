"""Training losses: angle errors of sincos/quat outputs, softmax error scaling, beta = 0
identity."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.training.losses import LOSS_KINDS, output_errors, scaled_loss, scaling_weights

SCALED = [k for k in LOSS_KINDS if k != "plain"]


@pytest.mark.parametrize("kind", SCALED)
@pytest.mark.parametrize("n", [1, 3, 49, 1000, 4097])
@pytest.mark.parametrize("detach", [True, False])
def test_beta_zero_is_plain_loss_exactly(kind: str, n: int, detach: bool) -> None:
    e = torch.rand(n, dtype=torch.float32, generator=torch.Generator().manual_seed(n)) * 3
    plain = scaled_loss(e, "plain")
    assert torch.equal(scaled_loss(e, kind, 0.0, detach), plain)
    assert torch.equal(scaling_weights(e, kind, 0.0), torch.ones_like(e))


@pytest.mark.parametrize("kind", SCALED)
def test_beta_zero_gradient_is_plain_gradient(kind: str) -> None:
    e1 = (torch.rand(64, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
    e2 = e1.detach().clone().requires_grad_()
    scaled_loss(e1, kind, 0.0, detach=False).backward()
    scaled_loss(e2, "plain").backward()
    assert torch.allclose(e1.grad, e2.grad, atol=1e-9)


errors = st.lists(st.floats(0.0, 3.0, allow_nan=False, width=32), min_size=2, max_size=200)


@settings(max_examples=40, deadline=None)
@given(e=errors, beta=st.floats(0.1, 20.0), kind=st.sampled_from(SCALED))
def test_scaled_weights_grow_with_error(e: list[float], beta: float, kind: str) -> None:
    t = torch.tensor(e, dtype=torch.float64)
    w = scaling_weights(t, kind, beta)
    assert torch.all(w > 0)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-9)
    order = torch.argsort(t)
    ws, es = w[order], t[order]
    strictly_larger = es[1:] > es[:-1]
    # a larger error never gets a smaller weight; ranks make ties order-dependent, so only
    # strictly larger errors are compared
    assert torch.all(ws[1:][strictly_larger] >= ws[:-1][strictly_larger] * (1 - 1e-12))
    # weights positively correlated with errors: the scaled loss is at least the plain mean
    assert float(scaled_loss(t, kind, beta)) >= float(t.mean()) * (1 - 1e-12) - 1e-15


@settings(max_examples=30, deadline=None)
@given(e=errors, b1=st.floats(0.1, 5.0), db=st.floats(0.5, 10.0), kind=st.sampled_from(SCALED))
def test_larger_beta_weights_the_largest_error_more(e: list[float], b1: float, db: float,
                                                    kind: str) -> None:
    t = torch.tensor(e, dtype=torch.float64)
    assume(float(t.max() - t.min()) >= 1e-3)  # all errors equal: every beta gives weight 1
    # the weight of the largest error (the largest weight; ties in rank order share it)
    w1, w2 = scaling_weights(t, kind, b1).max(), scaling_weights(t, kind, b1 + db).max()
    assert w2 >= w1 * (1 - 1e-12)


def test_unnormalised_softmax_weights_match_formula() -> None:
    e = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    w = scaling_weights(e, "softmax", 2.0)
    assert torch.allclose(w, 3 * torch.softmax(2.0 * e, 0))
    wn = scaling_weights(e, "softmax_norm", 2.0)
    assert torch.allclose(wn, 3 * torch.softmax(2.0 * e / e.mean(), 0))
    wr = scaling_weights(torch.tensor([2.0, 0.1, 0.5], dtype=torch.float64), "rank", 3.0)
    ref = 3 * torch.softmax(3.0 * torch.arange(3, dtype=torch.float64) / 3, 0)
    assert torch.allclose(wr, ref[[2, 0, 1]])


def test_detached_and_attached_weights_give_different_gradients() -> None:
    e1 = torch.tensor([0.1, 0.4, 1.5], requires_grad=True)
    e2 = e1.detach().clone().requires_grad_()
    scaled_loss(e1, "softmax", 2.0, detach=True).backward()
    scaled_loss(e2, "softmax", 2.0, detach=False).backward()
    w = scaling_weights(e1.detach(), "softmax", 2.0)
    assert torch.allclose(e1.grad, w / 3)
    assert not torch.allclose(e1.grad, e2.grad)


def test_sincos_error_is_the_angle_difference() -> None:
    a = torch.tensor([0.3, -3.0, 1.0], dtype=torch.float64)
    b = torch.tensor([0.5, 3.0, 1.0], dtype=torch.float64)
    y = 2.5 * torch.stack([torch.sin(a), torch.cos(a)], -1)  # scale does not matter
    tgt = torch.stack([torch.sin(b), torch.cos(b)], -1)
    e = output_errors(y, tgt, ["sincos"])[:, 0]
    assert torch.allclose(e, torch.tensor([0.2, 2 * math.pi - 6.0, 0.0], dtype=torch.float64),
                          atol=1e-5)


def test_quat_error_is_the_rotation_angle_and_sign_free() -> None:
    ang = torch.tensor([0.0, 0.7, 2.5], dtype=torch.float64)
    q_true = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).expand(3, 4)
    q_est = torch.stack([torch.cos(ang / 2), torch.sin(ang / 2), 0 * ang, 0 * ang], -1)
    e = output_errors(torch.cat([q_est[:2], -q_est[2:]]), q_true, ["quat"])[:, 0]
    assert torch.allclose(e, ang, atol=1e-5)


def test_up_error_is_the_angle_between_verticals_of_any_length() -> None:
    ang = torch.tensor([0.0, 0.7, 2.5, 3.1], dtype=torch.float64)
    up_true = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(4, 3)
    up_est = torch.stack([torch.sin(ang), 0 * ang, torch.cos(ang)], -1) * torch.tensor(
        [[1.0], [0.2], [5.0], [1.0]], dtype=torch.float64)
    e = output_errors(up_est, up_true, ["up"])[:, 0]
    assert torch.allclose(e, ang, atol=1e-5)


def test_errors_have_finite_gradients_at_zero_error() -> None:
    tgt = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    y = tgt.clone().requires_grad_()
    output_errors(y, tgt, ["sincos", "quat", "up"]).sum().backward()
    assert np.all(np.isfinite(y.grad.numpy()))


def test_unknown_kind_and_encoding_are_refused() -> None:
    with pytest.raises(ValueError, match="loss kind"):
        scaled_loss(torch.ones(3), "median", 1.0)
    with pytest.raises(ValueError, match="encoding"):
        output_errors(torch.ones(1, 3), torch.ones(1, 3), ["euler"])
