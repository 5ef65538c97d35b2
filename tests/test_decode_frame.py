"""The compiled one-frame decoder gives what the decoders of fit.py give, value for value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodes.observer.fit import fit_model
from pipeline.evaluation.model_card import load_card
from pipeline.kinematics.chain import load_chain

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["arm3-sparse", "knee"])  # up + sincos; quat + sincos
def test_compiled_one_frame_decoding_equals_the_fit_decoders(model: str) -> None:
    card = load_card(REPO / "models" / f"{model}.json")
    chain = load_chain(REPO / "configs" / "chains" / f"{Path(card.chain).stem}.yaml")
    fit = fit_model(card, chain, list(card.imus), card.rate_hz)
    y = np.random.default_rng(0).normal(size=(300, card.n_outputs)).astype(np.float32)
    y[3], y[4] = np.nan, 0.0  # a NaN output and an all-zero one
    results = []
    for compiled in (True, False):
        if not compiled:
            fit._frame_plan = None  # the decoders of fit.py
        q = np.zeros((len(y), chain.n_bodies, 4), np.float32)
        angle = np.zeros((len(y), len(chain.hinge_bodies)), np.float32)
        for i in range(len(y)):
            fit.decode(y[i:i + 1], q[i:i + 1], angle[i:i + 1])
        results.append((q, angle))
    (q1, a1), (q2, a2) = results
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(a1, a2)
    assert np.isnan(q1[3]).any() and np.isfinite(q1[4]).all()
