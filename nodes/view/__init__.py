"""Parts of the live viewer (:mod:`nodes.viewer`): buffers, 3D scene, plots, status, window.

Modules importing Qt or vispy (``chain_scene``, ``signal_plots``, ``model_picker``,
``window``) are imported only by the code paths that need them, so the headless viewer
runs without a display.
"""

from nodes.view.gui_calls import GuiCalls as GuiCalls
from nodes.view.latency_window import LatencyWindow as LatencyWindow
from nodes.view.pose_slot import PoseSlot as PoseSlot
from nodes.view.sample_ring import SampleRing as SampleRing
from nodes.view.sample_ring import SampleRings as SampleRings
