"""tools/long_sequences.py: observers scored minute by minute on long sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.evaluation.observer_eval import EvalResult
from tools.long_sequences import main, per_minute


def test_per_minute_bins_the_absolute_errors_after_the_warm_up() -> None:
    rate, n = 10.0, 1500                          # 150 s: minutes 0-1, 1-2 and a half minute
    err = np.empty((2, n))
    err[:, :50] = 1000.0                          # warm-up (5 s), left out
    err[:, 50:600] = [[-2.0], [2.0]]              # signs do not cancel
    err[:, 600:1200] = 3.0
    err[:, 1200:] = np.nan                        # no estimate: ignored
    err[0, 1300] = 7.0
    result = EvalResult({"seg": err}, {}, np.arange(n) / rate, 5.0)
    st = per_minute(result, rate, 5.0)["seg"]
    assert st["mean_deg"] == [2.0, 3.0, 7.0]
    assert st["p99_deg"] == [2.0, 3.0, 7.0]


def test_json_gives_every_observer_each_minute(capsys) -> None:
    assert main(["models/knee.onnx", "--problem", "knee-field", "--sequences", "1",
                 "--duration-s", "120", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["observers"]) == {"constraint_observer", "models/knee.onnx"}
    assert set(doc["observers"]["models/knee.onnx"]) == {"shank"}
    assert set(doc["observers"]["constraint_observer"]) == {"thigh", "shank"}  # + inclination
    for bodies in doc["observers"].values():
        assert len(bodies["shank"]["mean_deg"]) == len(bodies["shank"]["p99_deg"]) == 2
        assert all(0 < m <= q < 90 for m, q in zip(bodies["shank"]["mean_deg"],
                                                  bodies["shank"]["p99_deg"]))


def test_sequences_shorter_than_a_minute_are_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--problem", "knee-field", "--duration-s", "30"])
    assert "--duration-s must be at least 60 s" in capsys.readouterr().err
