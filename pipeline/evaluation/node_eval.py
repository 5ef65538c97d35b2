"""Scoring an observer node that needs no model file (e.g. the constraint observer) on a dataset.

The node is built standalone (``Node.create``) with the dataset's chain, fed each sequence as
``imu.frame`` blocks of ``block_s`` seconds (acc m/s^2, gyr rad/s, as the filter publishes
them), and its ``chain.state`` q_rel (w, x, y, z, body to parent) is scored per hinge body
like ``imuflow eval`` scores a model's hinge outputs (the angle about the hinge axis against
the truth) and per spherical joint like a model's quaternion outputs (the angle of the
rotation between estimate and truth), in degrees, after ``warmup_s``. Such observers leave
the root to the orientation node (VQF 6D on the root's IMU, which fk takes on its ``root``
input); when the root carries an IMU that node runs beside it and the root's inclination is
scored as a model's root quaternion is. A new node per sequence: every sequence starts from
scratch, as the ONNX models do from a zero state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.evaluation.joint_errors import (
    error_stats,
    hinge_error_deg,
    inclination_error_deg,
    rotation_error_deg,
    truth_known,
)
from pipeline.evaluation.observer_eval import REPO, EvalResult
from pipeline.kinematics.chain import JointType, load_chain
from pipeline.kinematics.fk import rel_to_hinge
from pipeline.runtime.node import GraphContext
from pipeline.runtime.registry import resolve
from pipeline.runtime.streams import ROOT, STATE, frame_dtype, frame_info
from pipeline.runtime.testing import make_block


def run_node(kind: str, data: ImuDataset, block_s: float = 1.0, root_imu: str | None = None,
             progress: bool = True, params: dict | None = None,
             root_params: dict | None = None) -> np.ndarray:
    """(S, T, n_bodies, 4) q_rel that node ``kind`` (with ``params``) publishes on every
    sequence of ``data``; with ``root_imu``, the root's entry is the orientation node's (with
    ``root_params``) quaternion for that IMU."""
    cls = resolve(kind)
    root_cls = resolve("orientation") if root_imu else None
    chain_file = Path(data.chain) if Path(data.chain).is_absolute() else REPO / data.chain
    info = frame_info("filter/imu.frame", list(data.imus), data.rate_hz)
    s_, t_ = data.imu.shape[:2]
    imu = data.imu.reshape(s_, t_, len(data.imus), 6)
    frames = np.zeros(t_, frame_dtype(len(data.imus)))
    frames["t_host"] = np.round(np.arange(t_) * 1e9 / data.rate_hz).astype(np.int64)
    block = max(1, round(block_s * data.rate_hz))
    out = []
    for s in tqdm(range(s_), desc=f"{kind} on {s_} sequences", unit="seq", disable=not progress):
        nodes = [cls.create("observer", context=GraphContext(chain_file=chain_file),
                            **(params or {}))]
        if root_cls is not None:
            nodes.append(root_cls.create("orientation", imu=root_imu, **(root_params or {})))
        frames["acc"], frames["gyr"] = imu[s, :, :, :3], imu[s, :, :, 3:]
        for i in range(0, t_, block):
            for node in nodes:
                node.on_block("frame", make_block(info, frames[i:i + block]))
        state = np.concatenate([b.data for b in nodes[0].emitted if b.info.kind == STATE])
        if len(state) != t_:
            raise ValueError(f"node '{kind}' published {len(state)} states for {t_} frames")
        q_rel = state["q_rel"].astype(np.float64)
        if root_cls is not None:
            q_rel[:, 0] = np.concatenate([b.data["q"] for b in nodes[1].emitted
                                          if b.info.kind == ROOT])
        out.append(q_rel)
    return np.stack(out)


def evaluate_node(kind: str, data: ImuDataset, warmup_s: float = 5.0, progress: bool = True,
                  params: dict | None = None, root_params: dict | None = None) -> EvalResult:
    """Per hinge and spherical joint, angle errors (S, T) deg of node ``kind`` (with
    ``params``; the root's orientation node with ``root_params``) on ``data``; stats after
    warm-up."""
    chain = load_chain(Path(data.chain) if Path(data.chain).is_absolute() else REPO / data.chain)
    if tuple(chain.body_names) != tuple(data.bodies):
        raise ValueError(f"dataset bodies {data.bodies} differ from chain {data.chain} "
                         f"bodies {chain.body_names}")
    root_imus = [n for n, b in zip(chain.imu_names, chain.imu_bodies, strict=True)
                 if b == 0 and n in data.imus]
    root_imu = root_imus[0] if root_imus else None
    q_rel = run_node(kind, data, root_imu=root_imu, progress=progress, params=params,
                     root_params=root_params)
    errors = {}
    if root_imu is not None:
        errors[chain.body_names[0]] = inclination_error_deg(
            q_rel[..., 0, :], np.asarray(data.q_rel[..., 0, :], dtype=np.float64))
    for i in range(1, chain.n_bodies):
        truth = np.asarray(data.q_rel[..., i, :], dtype=np.float64)
        if chain.joint_types[i] == JointType.HINGE:
            rot, axis = chain.rotations[i], chain.axes[i]
            errors[chain.body_names[i]] = hinge_error_deg(rel_to_hinge(q_rel[..., i, :], rot, axis),
                                                          rel_to_hinge(truth, rot, axis))
        elif chain.joint_types[i] == JointType.SPHERICAL:
            errors[chain.body_names[i]] = rotation_error_deg(q_rel[..., i, :], truth)
    k = round(warmup_s * data.rate_hz)
    stats = {b: error_stats(e[:, k:], truth_known(data.q_rel[:, k:, chain.index(b)]))
             for b, e in errors.items()}
    scored = (JointType.HINGE, JointType.SPHERICAL)
    not_estimated = [i for i in range(chain.n_bodies) if (chain.parents[i] < 0 and not root_imu)
                     or (chain.parents[i] >= 0 and chain.joint_types[i] not in scored)]
    q_rel[..., not_estimated, :] = np.nan
    return EvalResult(errors, stats, np.arange(data.imu.shape[1]) / data.rate_hz, warmup_s,
                      q_rel)
