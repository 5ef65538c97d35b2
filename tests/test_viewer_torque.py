"""The window plots joint torques: the dynamics node's chain.torque drawn under a real Xvfb."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nodes.dynamics import Dynamics
from pipeline.runtime.graph import load_graph
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import TORQUE
from tests.test_dynamics_node import ARM5, arm_states, feed

pytest_plugins = ["tests.conftest_gui"]

REPO = Path(__file__).resolve().parents[1]


def test_arm5_dynamics_config_wires_the_torques_to_the_viewer() -> None:
    viewer = next(n for n in load_graph(REPO / "configs" / "arm5_dynamics.yaml").nodes
                  if n.kind == "nodes.viewer.Viewer")
    assert [e.source for e in viewer.inputs["torque"]] == ["dynamics/chain.torque"]


@pytest.mark.gui
def test_window_plots_the_dynamics_nodes_torques(qapp) -> None:
    from nodes.view.command_client import ObserverClient
    from nodes.view.status_feed import StatusFeed
    from nodes.viewer import Viewer

    chain, st, _, _, _, _ = arm_states(3.0)
    now = time.monotonic_ns()
    st["t_host"] = now - (len(st) - 1 - np.arange(len(st))) * 10_000_000  # the last 3 s
    dyn = Dynamics.create("dynamics", chain=str(ARM5))
    out = feed(dyn, st, (10,))
    blocks = [b for b in dyn.emitted if b.topic.endswith(TORQUE)]
    tau = out["tau"]
    assert tau.shape == (len(st) - 6, 5) and np.ptp(tau) > 1.0  # a moving arm, in N m

    ctx = GraphContext(chain_file=ARM5, sources={"torque": ["dynamics/chain.torque"]})
    viewer = Viewer.create("viewer", context=ctx, fps=30)
    stop = threading.Event()
    win = viewer.build_window(StatusFeed(None), ObserverClient(None, "observer"), stop)
    try:
        win.show()
        qapp.processEvents()
        win.set_paused(True)  # the frame timer would redraw the plots at its own "now"
        plots = win.plots
        assert plots.torque_plot is not None and not plots.torque_curves  # wired: shown empty
        for b in blocks:
            viewer.on_block("torque", b)
        plots.refresh(now_ns=now)
        assert plots.torque_samples_drawn == len(tau)
        assert win.view_state()["torque_samples_drawn"] == len(tau)
        px = plots._pixels(plots.torque_plot)
        for j in range(5):
            x, y = plots.torque_curves[j].getData()
            if len(tau) <= 2 * px:  # every sample drawn, in N m, at its time before now
                np.testing.assert_allclose(y, tau[:, j], rtol=1e-6)
                np.testing.assert_allclose(x, (out["t_host"] - now) * 1e-9, atol=1e-9)
            else:  # decimated as the other plots: the envelope keeps the extremes
                assert len(x) <= 2 * px and np.isclose(y.max(), tau[:, j].max())
        names = [item[1].text for item in plots.torque_plot.legend.items]
        assert names == ["link1", "link2", "link3", "link4", "link5"]
        lo, hi = plots.torque_plot.vb.viewRange()[1]
        assert lo <= tau.min() and hi >= tau.max()  # the y range shows every torque
        assert plots.torque_plot.getAxis("left").labelUnits == "N m"
    finally:
        win.close()
        qapp.processEvents()


def test_model_picker_leaves_out_the_dynamics_model() -> None:
    from nodes.view.model_picker import list_models

    names = [p.name for p in list_models((REPO / "models",))]
    assert "knee.onnx" in names and "arm5-dynamics.onnx" not in names  # the observer's list
    assert (REPO / "models" / "arm5-dynamics.onnx").exists()
