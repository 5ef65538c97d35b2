"""The checks made before the viewer opens a window: display answers, Qt binding sound."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.view.display_check import FIXED_BINDING, binding_problem, display_problem

pytest_plugins = ["tests.conftest_gui"]

REPO = Path(__file__).resolve().parents[1]


def _unused_display() -> str:
    n = 97
    while Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
        n += 1
    return f":{n}"


def test_installed_qt_binding_keeps_none_alive():
    assert binding_problem() == ""  # PySide6 6.12.0 on Python 3.11 fails this (none_dealloc)
    text = (REPO / "pyproject.toml").read_text()
    assert f'"{FIXED_BINDING}"' in text and "none_dealloc" in text  # the pin says why


def test_display_problem_names_the_stale_display(monkeypatch):
    stale = _unused_display()
    monkeypatch.setenv("DISPLAY", stale)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_problem().startswith(f"DISPLAY={stale} does not answer")
    monkeypatch.delenv("DISPLAY")
    assert display_problem().startswith("no display")
    monkeypatch.setenv("WAYLAND_DISPLAY", "/nonexistent/wayland-9")
    assert "WAYLAND_DISPLAY=/nonexistent/wayland-9 does not answer" in display_problem()


@pytest.mark.gui
def test_display_problem_accepts_a_live_x_server(display):
    assert display_problem() == ""


@pytest.mark.slow
def test_stale_display_runs_headless_with_one_line(tmp_path, monkeypatch, capfd):
    from tests.test_viewer import _graph_yaml, _run_graph

    monkeypatch.chdir(REPO)
    stale = _unused_display()
    monkeypatch.setenv("DISPLAY", stale)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    path = tmp_path / "graph.yaml"
    path.write_text(_graph_yaml(None, None, "{}", duration_s=2.0))
    rc, _elapsed, errors = _run_graph(path, lambda run_dir: None, timeout_s=60)
    err = capfd.readouterr().err
    assert rc == 0 and not errors
    lines = [ln for ln in err.splitlines() if "running headless" in ln]
    assert len(lines) == 1 and f"DISPLAY={stale} does not answer" in lines[0], err[-3000:]
    assert "[viewer]" in lines[0] and "set png_dir" in lines[0]
    assert "xcb" not in err and "restarting" not in err
