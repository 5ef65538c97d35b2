"""Joint angles and body poses out of imuflow: CSV (pandas, MATLAB) and OpenSim ``.mot`` files.

Input is what the tracking chain publishes: ``chain.state`` (q_rel w,x,y,z body to
parent, hinge angles rad), optionally ``chain.pose`` (per body position m and
orientation w,x,y,z in the earth frame, z up) and ``chain.torque`` (per generalised
coordinate N m or N, root residual), with their stream infos naming the bodies, hinges
and coordinates. One row per state sample; a pose or torque is matched by its ``t_host``
(rows within half the differentiating window of either end, or of a gap, have no torque:
NaN).
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
    torque: np.ndarray | None = None  # (n, n_dof) N m (rotations) or N; NaN where none matched
    residual: np.ndarray | None = None  # (n, 6) root residual force N, moment N m, earth frame
    dofs: tuple[str, ...] = ()  # generalised coordinate names (chain.torque meta "dofs")
    dof_units: tuple[str, ...] = ()  # "N m" or "N" per coordinate
    # (n,) bool: every sensor had data in the observer's input frame; False: a sensor was
    # missing (a dropout) or invalid and the estimate was held (None: not known)
    sensors_ok: np.ndarray | None = None

    @property
    def t_s(self) -> np.ndarray:
        """(n,) s since the first sample."""
        return (self.t_host - self.t_host[0]) / 1e9 if len(self.t_host) else np.zeros(0)


def motion_from_blocks(state: list[Block], pose: list[Block] | None = None,
                       torque: list[Block] | None = None,
                       usable: tuple[np.ndarray, np.ndarray] | None = None) -> Motion:
    """Join ``chain.state`` blocks and (optionally) ``chain.pose`` and ``chain.torque`` blocks
    into one Motion; ``usable``, (t_host ns, ``streams.frames_usable``) of the observer's input
    frames, gives ``sensors_ok``."""
    if not state:
        raise ValueError("no chain.state samples: the tracking chain produced nothing (is the "
                         "session empty, or do its sensors not reach the observer?)")
    info: StreamInfo = state[0].info
    s = np.concatenate([b.data for b in state])
    bodies = tuple(info.meta.get("bodies", [f"body{i}" for i in range(s["q_rel"].shape[1])]))
    hinges = tuple(info.meta.get("hinges", [f"hinge{i}" for i in range(s["angle"].shape[1])]))
    pos = quat = tau = residual = None
    if pose:
        pos, quat = _matched(pose, s["t_host"], "pos", "quat")
    dofs: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    if torque:
        tau, residual = _matched(torque, s["t_host"], "tau", "residual")
        meta = torque[0].info.meta
        dofs = tuple(meta.get("dofs") or [f"dof{i}" for i in range(tau.shape[1])])
        units = tuple(meta.get("units") or ["N m"] * len(dofs))
    ok = None
    if usable is not None and len(usable[0]):
        idx, hit = _match(usable[0], s["t_host"])
        ok = hit & usable[1][idx]
    return Motion(s["t_host"].astype(np.int64), bodies, hinges, s["angle"].astype(np.float64),
                  s["q_rel"].astype(np.float64), pos, quat, tau, residual, dofs, units, ok)


def _matched(blocks: list[Block], t_host: np.ndarray, *fields: str) -> list[np.ndarray]:
    """``fields`` of the samples in ``blocks`` at each of ``t_host``, NaN where none has it."""
    p = np.concatenate([b.data for b in blocks])
    idx, hit = _match(p["t_host"], t_host)
    out = []
    for name in fields:
        v = p[name][idx].astype(np.float64)
        out.append(np.where(hit.reshape((-1,) + (1,) * (v.ndim - 1)), v, np.nan))
    return out


def _match(t_have: np.ndarray, t_want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``t_want`` (ns), the index of the same stamp in the sorted ``t_have`` (ns)
    and whether there is one."""
    idx = np.searchsorted(t_have, t_want).clip(0, len(t_have) - 1)
    return idx, t_have[idx] == t_want


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
    if m.torque is not None and m.residual is not None:
        cols += [(f"{d}_torque_{u.replace(' ', '')}", m.torque[:, i])
                 for i, (d, u) in enumerate(zip(m.dofs, m.dof_units))]
        cols += [(f"residual_{c}_{u}", m.residual[:, k])
                 for k, (c, u) in enumerate(zip(("fx", "fy", "fz", "mx", "my", "mz"),
                                                ("N",) * 3 + ("Nm",) * 3))]
    if m.sensors_ok is not None:  # last: the columns before it kept their places
        cols.append(("sensors_ok", m.sensors_ok.astype(np.int64)))
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
    _write_storage(path, name, cols, in_degrees=True)


def torque_file(mot_path: str | Path) -> Path:
    """Where the torques of a ``.mot`` export go: ``<stem>_torques.sto`` beside it."""
    p = Path(mot_path)
    return p.with_name(p.stem + "_torques.sto")


def write_sto_torques(m: Motion, path: str | Path, name: str = "imuflow") -> None:
    """OpenSim Storage file of the joint torques, like its inverse-dynamics output: time s and
    ``<coordinate>_moment`` (N m) or ``_force`` (N) per generalised coordinate."""
    if m.torque is None:
        raise ValueError("no chain.torque in this motion")
    cols = [("time", m.t_s)] + [
        (f"{d}_{'force' if u == 'N' else 'moment'}", m.torque[:, i])
        for i, (d, u) in enumerate(zip(m.dofs, m.dof_units))]
    _write_storage(path, f"{name} joint torques", cols, in_degrees=False)


def _write_storage(path: str | Path, title: str, cols: list[tuple[str, np.ndarray]],
                   in_degrees: bool) -> None:
    """OpenSim Storage (version 1): header, tab-separated column names, one row per sample."""
    with atomic_text(path) as f:
        f.write(f"{title}\nversion=1\nnRows={len(cols[0][1])}\nnColumns={len(cols)}\n"
                f"inDegrees={'yes' if in_degrees else 'no'}\nendheader\n")
        f.write("\t".join(c for c, _ in cols) + "\n")
        np.savetxt(f, np.column_stack([v for _, v in cols]), delimiter="\t", fmt="%.8f")
