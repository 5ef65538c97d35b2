"""The benchmarks and the held-out generator after the runtime set-up, without PyTorch.

`pip install -e .` installs no torch (it is the training extra). Here every subprocess
runs with torch made unimportable (a sitecustomize on PYTHONPATH puts a finder in front
of sys.meta_path that raises ModuleNotFoundError for torch, as an environment without it
does; worker processes inherit it), and the real scripts must run: rows that need torch
say so and are skipped, the rest is measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

HIDE_TORCH = '''\
import sys


class _NoTorch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture
def no_torch_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_TORCH)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{REPO}")
    env.pop("DISPLAY", None)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr  # hidden
    return env


def _run_all(env: dict, *calls: tuple[str, ...],
             timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Run independent scripts at once (their start-up dominates; this machine has 2 cores)."""
    procs = [subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for args in calls]
    done = []
    for args, proc in zip(calls, procs):
        stdout, stderr = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return done


def test_heldout_generator_runs_and_training_says_what_it_needs(no_torch_env, tmp_path):
    out = tmp_path / "heldout.npz"
    gen, train = _run_all(
        no_torch_env, ("tools/train_observer.py", "heldout", "--problem", "knee",
                       "--sequences", "1", "--duration-s", "3", "--out", str(out)),
        ("tools/train_observer.py", "train", "--run-dir", str(tmp_path / "run")))
    assert gen.returncode == 0, gen.stderr
    with np.load(out) as data:
        assert len(data.files) > 0
    assert train.returncode == 2
    assert "train needs PyTorch" in train.stderr and ".[train]" in train.stderr


@pytest.mark.timeout(300)
def test_bench_observer_and_e2e_run_and_skip_the_torch_rows(no_torch_env):
    obs, e2e = _run_all(
        no_torch_env, ("-m", "pipeline", "bench", "observer", "--json", "--steps", "300"),
        ("-m", "pipeline", "bench", "e2e", "--json", "--duration-s", "4.5", "--imus", "2", "5",
         "--layouts", "direct"))
    assert obs.returncode == 0, obs.stderr[-2000:]
    result = json.loads(obs.stdout)
    assert result["machine"]["torch"] is None
    rows = {r["model"]: r for r in result["models"]}
    assert rows["knee"]["onnx_step"]["p50_us"] > 0 and "skipped" not in rows["knee"]
    skipped = [r for r in rows.values() if "skipped" in r]
    assert len(skipped) == 4 and all("needs PyTorch" in r["skipped"] for r in skipped)
    assert result["constraint_observer"]["one_frame_on_block"]["hot"]["p50_us"] > 0
    awake = rows["knee"]["node_step_paced_100hz_awake"]  # None where PM QoS is not permitted
    assert awake is None or awake["p50_us"] > 0
    assert result["wake_penalty"]["hot"]["p50_us"] > 0

    assert e2e.returncode == 0, e2e.stderr[-2000:]
    result = json.loads(e2e.stdout)
    assert result["results"]["2_imus"]["direct"]["latency_count"] > 50
    assert "shipped knee model" in result["model_2_imus"]
    assert "needs PyTorch" in result["results"]["5_imus"]["skipped"]
