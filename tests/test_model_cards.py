"""The figures on the shipped model cards are what their commands give today.

Each card's held-out set (and arm3-sparse's stress set and constraint-observer baseline) is
regenerated from the card's seeds with the project's generator and scored again with the
evaluation the card names; every statistic must equal the card's to 0.01 deg. A change to
the generator, the evaluation or a model that moves a published number fails here.
Cards are told apart by their schema: observer cards (``imuflow.model_card/1``) as above,
inverse-dynamics cards (``imuflow.dynamics_card/1``): the held-out arm data regenerated from
the card's seed and the ONNX model run over it on top of Newton-Euler, MSE as stated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate
from tools.training.data import generate
from tools.training.problem import get_problem

REPO = Path(__file__).resolve().parents[1]
ALL_CARDS = {p: json.loads(p.read_text()) for p in sorted((REPO / "models").glob("*.json"))}
CARDS = [p for p, c in ALL_CARDS.items() if c.get("schema") == "imuflow.model_card/1"]
DYNAMICS_CARDS = [p for p, c in ALL_CARDS.items() if c.get("schema") == "imuflow.dynamics_card/1"]


def test_every_card_has_a_known_schema() -> None:
    assert set(ALL_CARDS) == set(CARDS) | set(DYNAMICS_CARDS), [
        (p.name, c.get("schema")) for p, c in ALL_CARDS.items()]


def _dataset(card: dict, section: str):
    spec = card[section]
    first, last = spec["seeds"]
    assert last - first + 1 == spec["sequences"]
    problem = card["training"].get("data", {}).get("problem", card["name"])  # older cards: name
    return generate(get_problem(problem), np.arange(first, last + 1), spec["duration_s"],
                    progress=False, stress=section == "stress")


def _assert_same(stats: dict, stated: dict, what: str) -> None:
    assert set(stats) == set(stated), what
    for joint, row in stated.items():
        got = stats[joint].as_dict()
        for key, value in row.items():
            assert got[key] == pytest.approx(value, abs=0.01), (what, joint, key)


@pytest.mark.parametrize("card_file", CARDS, ids=[c.stem for c in CARDS])
def test_card_figures_are_reproduced(card_file: Path) -> None:
    card = json.loads(card_file.read_text())
    model = OnnxObserverModel(card_file)
    for section in ("heldout", "stress"):
        if section not in card:
            continue
        data = _dataset(card, section)
        warmup = card[section]["warmup_s"]
        _assert_same(evaluate(model, data, warmup).stats, card[section]["per_joint"],
                     f"{card_file.name} {section}")
        for name, baseline in card.get("baselines", {}).items():
            if section in baseline:
                _assert_same(evaluate_node(name, data, warmup, progress=False).stats,
                             baseline[section], f"{card_file.name} {name} {section}")


@pytest.mark.parametrize("card_file", DYNAMICS_CARDS, ids=[c.stem for c in DYNAMICS_CARDS])
def test_dynamics_card_heldout_is_reproduced(card_file: Path) -> None:
    from nodes.dynamics.learned import LearnedDynamics, load_dynamics_card
    from tools.dynamics_data import arm_data

    card = ALL_CARDS[card_file]
    h = card["heldout"]
    data = arm_data(h["samples"], h["seed"], episode_s=h["episode_s"])
    model = LearnedDynamics(load_dynamics_card(card_file, (card_file.parent,)))
    assert card["output"]["target"] == "residual"
    pred = data.tau_rb + model.run(data.x)  # the whole series from a zero state, as the card
    assert np.mean((pred - data.tau) ** 2) == pytest.approx(h["mse_Nm2"], rel=1e-4)
    assert np.mean((data.tau_rb - data.tau) ** 2) == pytest.approx(h["rigid_body_only_mse_Nm2"],
                                                                    rel=1e-9)
    assert np.mean((data.tau_mean - data.tau) ** 2) == pytest.approx(
        h["expected_torque_mse_Nm2"], rel=1e-9)
