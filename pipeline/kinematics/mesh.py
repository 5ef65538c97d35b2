"""Triangle meshes of a chain's display geometry, and a numba kernel placing them in the world.

Built once per chain: vertices in body frames grouped by body, so one per-frame call of
``vertices_to_world_into`` with the body poses from ``pipeline.kinematics.fk`` moves the whole mesh.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain, Geometry
from pipeline.kinematics.quaternion import np_qrotate, qrot3


@dataclass(frozen=True)
class ChainMesh:
    """Mesh of all bodies: vertices grouped by body, ``body_start[i]:body_start[i+1]`` is body i.

    Attributes:
        vertices: (V, 3) float32, m, body frame of the owning body.
        faces: (F, 3) uint32 vertex indices, counter-clockwise seen from outside.
        colors: (V, 4) float32 RGBA in 0..1.
        body_start: (n_bodies + 1,) int64 first vertex of each body.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    body_start: np.ndarray


def _box(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray]:
    c = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    v = c * np.array([sx, sy, sz])
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def _lathe(profile: list[tuple[float, float]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Surface of revolution about z from (radius, z) rings; radius 0 rings become poles."""
    verts: list[np.ndarray] = []
    ring_idx: list[list[int]] = []
    ang = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    for r, z in profile:
        start = sum(len(x) for x in verts)
        if r == 0.0:
            verts.append(np.array([[0.0, 0.0, z]]))
            ring_idx.append([start] * n)
        else:
            verts.append(np.stack([r * np.cos(ang), r * np.sin(ang), np.full(n, z)], axis=1))
            ring_idx.append(list(range(start, start + n)))
    faces = []
    for a, b in itertools.pairwise(ring_idx):
        for k in range(n):
            k2 = (k + 1) % n
            if a[k] != a[k2]:
                faces.append((a[k], a[k2], b[k2]))
            if b[k] != b[k2]:
                faces.append((a[k], b[k2], b[k]))
    return np.concatenate(verts), np.array(faces, dtype=np.int64)


def primitive(g: Geometry, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 m in the geometry frame and faces (F, 3) of one shape."""
    rings = max(2, segments // 4)
    if g.shape == "box":
        return _box(*g.dims)
    if g.shape == "sphere":
        (r,) = g.dims
        prof = [(r * math.sin(t), -r * math.cos(t)) for t in np.linspace(0, math.pi, 2 * rings + 1)]
    elif g.shape == "cylinder":
        r, h = g.dims
        prof = [(0.0, -h / 2), (r, -h / 2), (r, h / 2), (0.0, h / 2)]
    elif g.shape == "capsule":
        r, h = g.dims
        cap = np.linspace(0, math.pi / 2, rings + 1)
        prof = [(r * math.sin(t), -h / 2 - r * math.cos(t)) for t in cap]
        prof += [(r * math.cos(t), h / 2 + r * math.sin(t)) for t in cap]
    else:
        raise ValueError(f"unknown shape {g.shape!r}; expected box, sphere, cylinder or capsule")
    prof = [(0.0 if abs(r) < 1e-12 else r, z) for r, z in prof]
    return _lathe(prof, segments)


def build_mesh(chain: Chain, segments: int = 16) -> ChainMesh:
    """Triangle mesh of all display geometry of ``chain``, vertices in body frames."""
    verts, faces, cols, start = [], [], [], [0]
    count = 0
    for body in chain.bodies:
        for g in body.geometry:
            v, f = primitive(g, segments)
            v = np_qrotate(np.asarray(g.rotation), v) + np.asarray(g.offset)
            verts.append(v)
            faces.append(f + count)
            cols.append(np.tile(np.asarray(g.color), (len(v), 1)))
            count += len(v)
        start.append(count)
    if count == 0:
        return ChainMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32),
                         np.zeros((0, 4), np.float32), np.asarray(start, np.int64))
    return ChainMesh(np.concatenate(verts).astype(np.float32),
                     np.concatenate(faces).astype(np.uint32),
                     np.concatenate(cols).astype(np.float32),
                     np.asarray(start, np.int64))


@njit(cache=True)
def vertices_to_world_into(vertices: np.ndarray, body_start: np.ndarray, pos: np.ndarray,
                           quat: np.ndarray, out: np.ndarray) -> None:
    """World vertices into out (V, 3) float32 m from body-frame vertices and body poses (n, 3|4)."""
    for b in range(body_start.shape[0] - 1):
        w, x, y, z = quat[b, 0], quat[b, 1], quat[b, 2], quat[b, 3]
        px, py, pz = pos[b, 0], pos[b, 1], pos[b, 2]
        for v in range(body_start[b], body_start[b + 1]):
            dx, dy, dz = qrot3(w, x, y, z, vertices[v, 0], vertices[v, 1], vertices[v, 2])
            out[v, 0] = px + dx
            out[v, 1] = py + dy
            out[v, 2] = pz + dz
