"""VqfTuning: the package defaults it names are vqf's own, and bad parameters are refused."""

from __future__ import annotations

import pytest
import vqf

from nodes.orientation import Orientation
from pipeline.estimation.vqf_tuning import (
    BODY_WORN,
    ROOT_BODY_WORN,
    VQF_PACKAGE_DEFAULTS,
    VqfTuning,
)


def test_package_defaults_are_the_vqf_packages_own() -> None:
    params = vqf.VQF(0.01).params
    for name, value in VQF_PACKAGE_DEFAULTS.kwargs().items():
        assert params[name] == pytest.approx(value), name


def test_body_worn_tuning_reaches_vqf() -> None:
    params = vqf.VQF(0.01, **BODY_WORN.kwargs()).params
    assert params["biasClip"] == 8.0 and params["tauAcc"] == 1.5


def test_overrides_replace_by_name_and_refuse_unknown_or_non_positive() -> None:
    assert BODY_WORN.with_overrides({"tauAcc": 3}).tauAcc == 3.0
    assert BODY_WORN.with_overrides({"tauAcc": 3}).biasClip == BODY_WORN.biasClip
    with pytest.raises(ValueError, match="restThGyro"):
        BODY_WORN.with_overrides({"restThGyro": 2.0})
    with pytest.raises(ValueError, match="biasClip"):
        VqfTuning(biasClip=0.0)


def test_orientation_node_runs_the_body_worn_tuning_unless_told_otherwise() -> None:
    assert Orientation.Params().tau_acc_s == ROOT_BODY_WORN.tauAcc == 2.0
    assert Orientation.Params(vqf={"biasClip": 2.0}).vqf == {"biasClip": 2.0}


def test_tuning_grid_tool_scores_both_tunings(capsys: pytest.CaptureFixture[str]) -> None:
    import math

    from tools.vqf_tuning_grid import main

    assert main(["--sequences", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2 and all("gyro bias 6 deg/s: seg1" in r for r in rows)
    means = [float(r.rsplit("seg3 ", 1)[1]) for r in rows]
    assert all(math.isfinite(m) for m in means) and means[0] != means[1]
