"""`imuflow nodes` shows each parameter's meaning and unit, read from its Params field comments."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from pipeline.runtime.param_notes import param_notes
from pipeline.runtime.params import describe
from pipeline.runtime.registry import resolve
from tests.conftest import REPO


@dataclass(frozen=True)
class _Example:
    port: str  # device path
    # full-line notes above a field without its own comment are that field's
    mode: str = "a"
    speed: float = 1.0  # 1 = real time;
    # continued here, before the next commented field
    timeout_s: float = 0.5  # read timeout
    rate_hz: float = 100.0  # sample rate, Hz
    window_s: float = 2.0
    names: list[str] = field(default_factory=list)
    merge_s: float = -1.0  # merge up to this span,
    # -1 = auto (a block after the last field continues it)

    def __post_init__(self) -> None:  # a comment here is not a field's
        pass


def test_notes_come_from_the_comments_around_each_field():
    notes = param_notes(_Example)
    assert notes == {
        "port": "device path",
        "mode": "full-line notes above a field without its own comment are that field's",
        "speed": "1 = real time; continued here, before the next commented field",
        "timeout_s": "read timeout [s]",  # unit from the name when the comment lacks it
        "rate_hz": "sample rate, Hz",  # stated: not repeated
        "window_s": "[s]",
        "merge_s": "merge up to this span, -1 = auto (a block after the last field continues "
                   "it) [s]",
    }


KINDS = ["sim", "replay", "serial_imu", "movella_dot", "witmotion_ble", "lsl_imu", "sync",
         "filter", "orientation", "observer", "constraint_observer", "fk", "viewer", "recorder",
         "lsl_outlet", "remote_input", "relay", "counter", "sequence_check"]


def test_every_parameter_of_the_shipped_kinds_has_a_meaning():
    missing = [f"{kind}.{name}" for kind in KINDS
               for name, _, _ in describe(resolve(kind).Params)
               if name not in param_notes(resolve(kind).Params)]
    assert missing == []


def test_imuflow_nodes_prints_them():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "pipeline", "nodes", "sim"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=60, check=True).stdout
    assert "    param rate_hz: number = 100.0  # sensor sample rate, Hz\n" in out
    assert "    param clock_offset_s: number = 5.0  # device clocks start up to this many " \
           "seconds apart\n" in out
    assert "    param procedure_functional_s: number = 24.0  # [s]\n" in out
