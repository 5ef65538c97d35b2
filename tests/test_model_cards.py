"""The figures on the shipped model cards are what their commands give today.

Each card's held-out set (and arm3-sparse's stress set and constraint-observer baseline) is
regenerated from the card's seeds with the project's generator and scored again with the
evaluation the card names; every statistic must equal the card's to 0.01 deg. A change to
the generator, the evaluation or a model that moves a published number fails here.
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
CARDS = sorted((REPO / "models").glob("*.json"))


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
