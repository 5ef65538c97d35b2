"""The shipped observers on data from another simulator (RING's random chain motion generator).

``tests/data/ring_sim_*.npz`` were made with ``tools/ring_simulator_set.py`` in RING's own
venv (tests/data/README.md): RING's motion, IMU model (sensors that low-pass their signals)
and noise, none of imuflow's code. 4 sequences x 30 s each, one per RING motion
configuration. BENCHMARKS.md, "Another simulator", has the full 32-sequence sets.
"""

from __future__ import annotations

import pytest

from pipeline.evaluation.imu_dataset import load_dataset
from pipeline.evaluation.node_eval import evaluate_node
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate
from tests.conftest import REPO

DATA = REPO / "tests" / "data"


def _means(result) -> dict[str, float]:
    return {body: float(stats.mean_deg) for body, stats in result.stats.items()}


@pytest.fixture(scope="module")
def arm3() -> tuple[dict[str, float], dict[str, float]]:
    data = load_dataset(DATA / "ring_sim_arm3.npz")
    model = evaluate(OnnxObserverModel(REPO / "models" / "arm3-sparse.onnx"), data)
    return _means(model), _means(evaluate_node("constraint_observer", data, progress=False))


def test_arm3_observers_hold_the_issues_targets_on_rings_data(arm3) -> None:
    """#14: hinge means <= 3.5 deg, seg1 inclination <= 3 (the plain GRU of 2026-12-03 had
    28 / 18 deg hinge means on such a set)."""
    for means in arm3:
        assert means["seg1"] <= 3.0 and means["seg2"] <= 3.5 and means["seg3"] <= 3.5, means


def test_arm3_hybrid_is_level_with_the_constraint_observer_on_rings_data(arm3) -> None:
    """#14: at least the constraint observer's accuracy on another simulator's data. The
    hybrid trained on shaken and filtered sensors (arm3-vib-band, 2026-12-07) is ahead on
    RING's 32-sequence sets on every joint but seg3 of one (0.01 deg); on these four sequences
    seg1 2.13 against 2.16, seg2 1.89 / 1.93, seg3 1.95 / 1.93. The model before it, trained
    on ideal sensors (0.06-0.11 behind on the 32-sequence set), has seg1 2.31 here and fails
    this bound."""
    model, constraint = arm3
    for body in ("seg1", "seg2", "seg3"):
        assert model[body] <= constraint[body] + 0.05, (body, model, constraint)


def test_knee_hybrid_beats_the_constraint_observer_on_rings_data() -> None:
    """32-sequence set: knee 1.98 deg, the constraint observer 3.13, RING 6.5; these four
    sequences: 1.75 and 2.24."""
    data = load_dataset(DATA / "ring_sim_knee.npz")
    model = _means(evaluate(OnnxObserverModel(REPO / "models" / "knee.onnx"), data))
    constraint = _means(evaluate_node("constraint_observer", data, progress=False))
    assert model["shank"] <= 3.0, model
    assert model["shank"] < constraint["shank"], (model, constraint)
