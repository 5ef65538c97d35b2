"""Shared fixtures: a short run folder per test, graph files, real-data folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# test-only node kinds (tests.runtime_nodes.X, ...): a package kinds may be imported from;
# set here, at import, so worker processes of module-scoped fixtures inherit it too
os.environ.setdefault("IMUFLOW_KIND_PACKAGES", "tests")


@pytest.fixture(autouse=True)
def runs_dir(monkeypatch: pytest.MonkeyPatch):
    """Point IMUFLOW_RUNS at a short fresh folder (ipc socket paths are length-limited)."""
    path = tempfile.mkdtemp(prefix="imf")
    monkeypatch.setenv("IMUFLOW_RUNS", path)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def write_graph(tmp_path: Path):
    """Write a graph YAML (dedented) to tmp_path and return its path."""
    def write(text: str, name: str = "graph.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


@pytest.fixture
def realdata() -> Path:
    """The shared recorded-data folder from IMUFLOW_DATA (CI sets it); skip when unset."""
    value = os.environ.get("IMUFLOW_DATA")
    if not value:
        if os.environ.get("CI"):  # .ci/run enables the tier; never skip it silently there
            pytest.fail("CI must set IMUFLOW_DATA to the shared data folder (see .ci/run)")
        pytest.skip("real-data tier: set IMUFLOW_DATA to the shared data folder to run")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"IMUFLOW_DATA={value} is not a folder")
    return path
