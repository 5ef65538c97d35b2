"""The 3D view of a chain: one shaded mesh placed by the numba vertex kernel, floor, axes, IMUs.

Needs an OpenGL context: a Qt window (``vispy.use("pyside6")``) or vispy's EGL backend for
off-screen rendering. Only the thread that owns the canvas may call its methods.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.geometry import MeshData
from vispy.scene.cameras import TurntableCamera
from vispy.visuals.transforms import STTransform

from pipeline.kinematics.chain import Chain
from pipeline.kinematics.fk import Kinematics
from pipeline.kinematics.mesh import build_mesh, vertices_to_world_into

BACKGROUND = "#1e2127"
FLOOR_STEP_M = 0.1
LIGHT = (0.0, 1.0, 0.0, 0.0)
FOLLOW_GAIN = 0.15  # per drawn frame: how fast the camera centre follows the chain
FOLLOW_MIN_STEP_M = 0.005
IMU_COLOR = (1.0, 0.62, 0.1, 1.0)


def _floor_lines(half_m: float, step_m: float) -> np.ndarray:
    """Segment end points (k, 3) m of a square grid at z = 0 (earth frame)."""
    ticks = np.arange(-half_m, half_m + step_m / 2, step_m)
    segs = []
    for v in ticks:
        segs += [(v, -half_m, 0.0), (v, half_m, 0.0), (-half_m, v, 0.0), (half_m, v, 0.0)]
    return np.asarray(segs, np.float32)


class ChainScene:
    """A vispy SceneCanvas showing ``chain``; call :meth:`set_pose` with each new pose.

    Attributes:
        canvas: the vispy SceneCanvas (``canvas.native`` is the Qt widget when windowed).
        view: the ViewBox holding the scene; its camera is a turntable (orbit, zoom, pan).
    """

    def __init__(self, chain: Chain, *, size: tuple[int, int] = (800, 600), show: bool = False,
                 segments: int = 20, follow: bool = True) -> None:
        self.chain = chain
        self.follow = follow  # keep the camera centred on the chain (smoothed)
        self.kin = Kinematics(chain)
        self.canvas = scene.SceneCanvas(keys=None, size=size, show=show, bgcolor=BACKGROUND)
        self.view = self.canvas.central_widget.add_view()
        self.mesh = build_mesh(chain, segments)
        self._world = np.empty_like(self.mesh.vertices)
        # smooth normals in body frames: a rigid body's normals only rotate with it
        self._normals_body = (MeshData(self.mesh.vertices, self.mesh.faces).get_vertex_normals()
                              .astype(np.float32) if len(self.mesh.faces) else self._world.copy())
        self._normals_world = np.empty_like(self._normals_body)
        self._no_shift = np.zeros((chain.n_bodies, 3), np.float32)
        self._fast_upload = False  # set once the visual's GPU buffers can be written directly
        self._body_visual = scene.visuals.Mesh(shading="smooth", parent=self.view.scene)
        zero_pos, zero_quat = self.kin.forward(chain.q_zero())
        extent = self._extent(zero_pos, zero_quat)
        self._neutral_pos = zero_pos
        if len(self.mesh.faces):
            self._body_visual.set_data(vertices=self._world, faces=self.mesh.faces,
                                       vertex_colors=self.mesh.colors)
        else:
            self._body_visual.visible = False
        half = max(2.0, float(np.ceil(np.abs(extent[:, :2]).max() + 1.0)))
        self.floor = scene.visuals.Line(_floor_lines(half, FLOOR_STEP_M), connect="segments",
                                        color=(0.55, 0.58, 0.62, 0.45), parent=self.view.scene)
        self.axes = scene.visuals.XYZAxis(parent=self.view.scene, width=3)
        self.axes.transform = STTransform(scale=(0.25, 0.25, 0.25))
        self.imu_markers = scene.visuals.Markers(parent=self.view.scene)
        self.imu_markers.set_data(np.zeros((max(len(chain.imus), 1), 3), np.float32))
        self.imu_markers.set_gl_state("translucent", depth_test=False)
        self.imu_markers.visible = bool(chain.imus)
        self._frame_camera(extent)
        self._attach_headlight()
        self.set_pose(zero_pos.astype(np.float32), zero_quat.astype(np.float32))

    def _extent(self, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """(2, 3) m bounding box of the chain in the pose ``pos``/``quat`` (earth frame)."""
        vertices_to_world_into(self.mesh.vertices, self.mesh.body_start, pos.astype(np.float32),
                               quat.astype(np.float32), self._world)
        allp = np.concatenate([pos, self._world])
        return np.stack([allp.min(0), allp.max(0)])

    def _frame_camera(self, extent: np.ndarray) -> None:
        """Orbit camera looking at the chain from the front-left, slightly above, floor in view."""
        center = extent.mean(0)
        self._center_offset = center - self._neutral_pos.mean(0)  # view centre vs body origins
        size = float(np.linalg.norm(extent[1] - extent[0]))
        self.view.camera = TurntableCamera(fov=40.0, elevation=20.0, azimuth=-40.0,
                                           distance=max(1.5, 2.2 * size), center=tuple(center),
                                           up="+z")
        self.view.camera.depth_value = 50.0  # near/far ratio: keeps depth precision (no speckle)

    def _attach_headlight(self) -> None:
        """Keep the light coming from the camera so the side facing the user is lit."""
        light = LIGHT
        initial = self.view.camera.transform.imap(light)

        def follow(_event: object = None) -> None:
            d = self.view.camera.transform.map(initial)[:3]
            self._body_visual.shading_filter.light_dir = d

        self.view.scene.transform.changed.connect(follow)
        follow()

    def set_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Move every body: pos (n_bodies, 3) m and quat (n_bodies, 4) wxyz, body to earth."""
        m = self.mesh
        if len(m.faces):
            pos32 = np.ascontiguousarray(pos, np.float32)
            quat32 = np.ascontiguousarray(quat, np.float32)
            vertices_to_world_into(m.vertices, m.body_start, pos32, quat32, self._world)
            self._upload_vertices(quat32)
        if self.follow:
            cam = self.view.camera
            target = np.asarray(pos, np.float64).mean(0) + self._center_offset
            step = FOLLOW_GAIN * (target - np.asarray(cam.center))
            if np.abs(step).max() > FOLLOW_MIN_STEP_M:  # moving the camera costs a full update
                cam.center = tuple(np.asarray(cam.center) + step)
        if len(self.kin.site_body):
            spos, _ = self.kin.sites(pos[None].astype(np.float64), quat[None].astype(np.float64))
            self.imu_markers.set_data(spos[0].astype(np.float32), face_color=IMU_COLOR,
                                      edge_color="white", edge_width=1.0, size=11)
        self.canvas.update()

    def _upload_vertices(self, quat: np.ndarray) -> None:
        """Write the moved vertices (and their rotated normals) into the mesh's GPU buffers.

        ``mesh_data_changed()`` would rebuild the visual's colour shader and re-upload the
        colours on every pose (a shader compile per frame: about 12 ms with Mesa llvmpipe), so
        after the first full upload only the vertex and normal buffers are rewritten.
        """
        visual = self._body_visual
        vbuf = getattr(visual, "_vertices", None)
        nbuf = getattr(visual.shading_filter, "_normals", None)
        if not self._fast_upload or vbuf is None or nbuf is None:
            md = visual.mesh_data  # same faces and colours: update vertices only
            md.set_vertices(self._world, indexed=None, reset_normals=True)
            visual.mesh_data_changed()
            self._fast_upload = vbuf is not None and nbuf is not None
            return
        faces = self.mesh.faces
        vertices_to_world_into(self._normals_body, self.mesh.body_start, self._no_shift, quat,
                               self._normals_world)
        vbuf.set_data(self._world[faces].reshape(-1, 3), convert=True)
        nbuf.set_data(self._normals_world[faces].reshape(-1, 3), convert=True)
        visual.update()

    def show_bodies(self, visible: bool) -> None:
        """Show or hide the body meshes (floor, axes and IMU markers stay)."""
        self._body_visual.visible = visible
        self.canvas.update()

    def render(self) -> np.ndarray:
        """Draw now and return the image: (h, w, 4) uint8 RGBA."""
        return self.canvas.render()
