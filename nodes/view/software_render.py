"""Software renderer of a chain with matplotlib's Agg backend (no OpenGL): the headless fallback.

Draws the same display geometry as :class:`nodes.view.chain_scene.ChainScene` (flat-shaded
triangles, floor grid, IMU markers) from a similar viewpoint; slower and simpler, but it
needs nothing beyond matplotlib.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from pipeline.kinematics.chain import Chain
from pipeline.kinematics.fk import Kinematics
from pipeline.kinematics.mesh import build_mesh, vertices_to_world_into

LIGHT_DIR = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


class AggChainRenderer:
    """Renders chain poses to RGBA images of ``size`` (w, h) px without a GPU or display."""

    def __init__(self, chain: Chain, size: tuple[int, int] = (800, 600)) -> None:
        self.kin = Kinematics(chain)
        self.mesh = build_mesh(chain, segments=12)
        self._world = np.empty_like(self.mesh.vertices)
        self.fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100, facecolor="#1e2127")
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0, 0, 1, 1), projection="3d", facecolor="#1e2127")
        pos, quat = self.kin.forward(chain.q_zero())
        vertices_to_world_into(self.mesh.vertices, self.mesh.body_start, pos.astype(np.float32),
                               quat.astype(np.float32), self._world)
        pts = np.concatenate([self._world, pos.astype(np.float32)])
        self.center = (pts.min(0) + pts.max(0)) / 2
        self.half = float(max(np.ptp(pts, axis=0).max() / 2 + 0.15, 0.4))

    def render(self, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Image (h, w, 4) uint8 RGBA of the pose: pos (n, 3) m, quat (n, 4) wxyz body to earth."""
        m = self.mesh
        vertices_to_world_into(m.vertices, m.body_start, np.ascontiguousarray(pos, np.float32),
                               np.ascontiguousarray(quat, np.float32), self._world)
        tri = self._world[m.faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        shade = 0.35 + 0.65 * np.clip(normal @ LIGHT_DIR, 0.0, 1.0)
        colors = m.colors[m.faces[:, 0]].copy()
        colors[:, :3] *= shade[:, None]
        ax = self.ax
        ax.clear()
        ax.set_axis_off()
        c, h = self.center, self.half
        ax.set_xlim(c[0] - h, c[0] + h)
        ax.set_ylim(c[1] - h, c[1] + h)
        ax.set_zlim(c[2] - h, c[2] + h)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-40)
        floor_z = c[2] - h
        for v in np.linspace(-h, h, 9):
            ax.plot([c[0] + v] * 2, [c[1] - h, c[1] + h], [floor_z] * 2, color="#5a6068", lw=0.5)
            ax.plot([c[0] - h, c[0] + h], [c[1] + v] * 2, [floor_z] * 2, color="#5a6068", lw=0.5)
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors="none"))
        if len(self.kin.site_body):
            spos, _ = self.kin.sites(np.asarray(pos, np.float64)[None],
                                     np.asarray(quat, np.float64)[None])
            ax.scatter(*spos[0].T, color=(1.0, 0.62, 0.1), s=30, depthshade=False)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba()).copy()
