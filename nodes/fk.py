"""Forward kinematics node: joint state (+ root orientation) to world poses of every body."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.fk import Kinematics
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import POSE, ROOT, STATE, TRUTH, pose_dtype

ROOTS_KEPT = 256  # recent root samples kept to pair with state samples by t_host


class ForwardKinematics(Node):
    """Compose relative body orientations into world poses with numba kernels.

    Ports:
        state: chain.state (or chain.truth): q_rel (n_bodies, 4) w,x,y,z body to parent.
        root: root.orientation (optional): q w,x,y,z root to earth; replaces the root's q_rel.
            A state sample takes the root sample of the same t_host when it has come (list
            the orientation node before the observer so that it comes first in a direct
            group), else the newest one.
        chain.pose (out): pos (n_bodies, 3) m and quat (n_bodies, 4) w,x,y,z body to earth,
            earth frame z up, t_host passed through from the state.
    """

    inputs = {"state": Input(accepts=(STATE, TRUTH)),
              "root": Input(accepts=(ROOT,), required=False)}
    outputs = (POSE,)

    @dataclass(frozen=True)
    class Params:
        chain: Path | None = None  # chain YAML; default: the graph's `chain:`
        root_position: tuple[float, float, float] = (0.0, 0.0, 1.0)  # m, earth frame

    def setup(self) -> None:
        path = self.params.chain or self.context.chain_file
        if path is None:
            raise ConfigError(f"node '{self.id}': no chain: set params.chain or the graph's "
                              "`chain:` key", key="chain")
        self.kin = Kinematics(load_chain(self.context.resolve(path)))
        n = self.kin.n
        self._dtype = pose_dtype(n)
        self._root_q: np.ndarray | None = None  # newest root sample, w,x,y,z
        self._roots: dict[int, np.ndarray] = {}  # t_host (ns) -> root sample, the newest kept
        self._root_pos = np.asarray(self.params.root_position, dtype=np.float64)
        self.kin.forward_rel(np.tile([1.0, 0, 0, 0], (1, n, 1)), self._root_pos[None])  # compile
        self.declare(POSE, StreamInfo.for_array(
            f"{self.id}/{POSE}", POSE, self._dtype, channels=self._dtype.names,
            units=("ns", "m", "1"), meta={"bodies": list(self.kin.chain.body_names),
                                          "frame": "earth, z up"}))

    def on_block(self, port: str, block: Block) -> None:
        if port == "root":
            self._keep_roots(block.data)
            return
        q_rel = np.array(block.data["q_rel"], dtype=np.float64)
        if q_rel.shape[1] != self.kin.n:
            raise ValueError(f"node '{self.id}': state has {q_rel.shape[1]} bodies, chain "
                             f"'{self.kin.chain.name}' has {self.kin.n}")
        if self._root_q is not None:
            t = block.data["t_host"]
            q_rel[:, 0] = (self._roots.get(int(t[0]), self._root_q) if len(t) == 1 else
                           [self._roots.get(ti, self._root_q) for ti in t.tolist()])
        root_pos = np.broadcast_to(self._root_pos, (len(q_rel), 3))
        pos, quat = self.kin.forward_rel(q_rel, root_pos)
        out = np.empty(len(q_rel), self._dtype)
        out["t_host"] = block.data["t_host"]
        out["pos"] = pos
        out["quat"] = quat
        self.emit(POSE, out, t_host=block.t_host, gap=block.gap)

    def _keep_roots(self, roots: np.ndarray) -> None:
        """Remember root samples (ROOT_DTYPE) by t_host for the state samples still to come."""
        if not len(roots):
            return
        q = roots["q"].astype(np.float64)
        for t, qi in zip(roots["t_host"].tolist(), q):
            self._roots[t] = qi
        self._root_q = q[-1]
        extra = len(self._roots) - max(ROOTS_KEPT, len(roots))  # a whole block stays
        if extra > 0:  # dicts keep insertion order: drop the oldest
            for t in list(itertools.islice(self._roots, extra)):
                del self._roots[t]
