"""Joint angles and body poses out of imuflow: CSV (pandas, MATLAB) and OpenSim ``.mot`` files.

Input is what the tracking chain publishes: ``chain.state`` (q_rel w,x,y,z body to
parent, hinge angles rad) and optionally ``chain.pose`` (per body position m and
orientation w,x,y,z in the earth frame, z up), with their stream infos naming the
bodies and hinges. One row per state sample; a pose is matched by its ``t_host``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.runtime.atomic_file import atomic_text
from pipeline.runtime.message import Block, StreamInfo


@dataclass(frozen=True)
class Motion:
    """Tracked motion: (n,) times, per hinge angles (n, h) rad, per body q_rel/pos/quat."""

    t_host: np.ndarray  # (n,) int64 ns, host clock
    bodies: tuple[str, ...]
    hinges: tuple[str, ...]
    angle: np.ndarray  # (n, n_hinge) rad
    q_rel: np.ndarray  # (n, n_bodies, 4) w,x,y,z body to parent (root: to earth)
    pos: np.ndarray | None  # (n, n_bodies, 3) m, earth frame; NaN where no pose matched
    quat: np.ndarray | None  # (n, n_bodies, 4) w,x,y,z body to earth

    @property
    def t_s(self) -> np.ndarray:
        """(n,) s since the first sample."""
        return (self.t_host - self.t_host[0]) / 1e9 if len(self.t_host) else np.zeros(0)


def motion_from_blocks(state: list[Block], pose: list[Block] | None = None) -> Motion:
    """Join ``chain.state`` blocks and (optionally) ``chain.pose`` blocks into one Motion."""
    if not state:
        raise ValueError("no chain.state samples: the tracking chain produced nothing (is the "
                         "session empty, or do its sensors not reach the observer?)")
    info: StreamInfo = state[0].info
    s = np.concatenate([b.data for b in state])
    bodies = tuple(info.meta.get("bodies", [f"body{i}" for i in range(s["q_rel"].shape[1])]))
    hinges = tuple(info.meta.get("hinges", [f"hinge{i}" for i in range(s["angle"].shape[1])]))
    pos = quat = None
    if pose:
        p = np.concatenate([b.data for b in pose])
        idx = np.searchsorted(p["t_host"], s["t_host"]).clip(0, len(p) - 1)
        hit = p["t_host"][idx] == s["t_host"]
        pos = np.where(hit[:, None, None], p["pos"][idx], np.nan)
        quat = np.where(hit[:, None, None], p["quat"][idx], np.nan)
    return Motion(s["t_host"].astype(np.int64), bodies, hinges, s["angle"].astype(np.float64),
                  s["q_rel"].astype(np.float64), pos, quat)


def csv_columns(m: Motion) -> list[tuple[str, np.ndarray]]:
    """(column name with unit, (n,) values) for every exported quantity, in file order."""
    cols: list[tuple[str, np.ndarray]] = [("time_s", m.t_s), ("t_host_ns", m.t_host)]
    cols += [(f"{h}_angle_deg", np.degrees(m.angle[:, i])) for i, h in enumerate(m.hinges)]
    for i, b in enumerate(m.bodies):
        cols += [(f"{b}_q_rel_{c}", m.q_rel[:, i, k]) for k, c in enumerate("wxyz")]
    if m.pos is not None and m.quat is not None:
        for i, b in enumerate(m.bodies):
            cols += [(f"{b}_pos_{c}_m", m.pos[:, i, k]) for k, c in enumerate("xyz")]
            cols += [(f"{b}_quat_{c}", m.quat[:, i, k]) for k, c in enumerate("wxyz")]
    return cols


def write_csv(m: Motion, path: str | Path) -> None:
    """CSV, one row per frame; the header names each column with its unit (deg, m, ns, s).

    ``q_rel`` is body to parent, ``quat`` body to earth (z up), both w,x,y,z.
    """
    cols = csv_columns(m)
    with atomic_text(path) as f:
        f.write(",".join(name for name, _ in cols) + "\n")
        values = np.column_stack([v.astype(np.float64) for _, v in cols])
        fmt = ["%.6f", "%d"] + ["%.9g"] * (len(cols) - 2)
        np.savetxt(f, values, delimiter=",", fmt=fmt)


def write_mot(m: Motion, path: str | Path, name: str = "imuflow") -> None:
    """OpenSim motion file (Storage format, version 1): time s and each hinge angle in degrees.

    A hinge's column is named after the body it moves: ``shank_angle`` is the knee.
    """
    cols = [("time", m.t_s)] + [(f"{h}_angle", np.degrees(m.angle[:, i]))
                                for i, h in enumerate(m.hinges)]
    with atomic_text(path) as f:
        f.write(f"{name}\nversion=1\nnRows={len(m.t_host)}\nnColumns={len(cols)}\n"
                "inDegrees=yes\nendheader\n")
        f.write("\t".join(c for c, _ in cols) + "\n")
        np.savetxt(f, np.column_stack([v for _, v in cols]), delimiter="\t", fmt="%.8f")
