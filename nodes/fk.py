"""Forward kinematics node: joint state (+ root orientation) to world poses of every body."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.chain import load_chain
from pipeline.errors import ConfigError
from pipeline.fk import Kinematics
from pipeline.message import Block, StreamInfo
from pipeline.node import Node
from pipeline.ports import Input
from pipeline.streams import POSE, ROOT, STATE, TRUTH, pose_dtype


class ForwardKinematics(Node):
    """Compose relative body orientations into world poses with numba kernels.

    Ports:
        state: chain.state (or chain.truth): q_rel (n_bodies, 4) w,x,y,z body to parent.
        root: root.orientation (optional): q w,x,y,z root to earth; replaces the root's q_rel.
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
        self._root_q: np.ndarray | None = None
        self._root_pos = np.asarray(self.params.root_position, dtype=np.float64)
        self.kin.forward_rel(np.tile([1.0, 0, 0, 0], (1, n, 1)), self._root_pos[None])  # compile
        self.declare(POSE, StreamInfo.for_array(
            f"{self.id}/{POSE}", POSE, self._dtype, channels=self._dtype.names,
            units=("ns", "m", "1"), meta={"bodies": list(self.kin.chain.body_names),
                                          "frame": "earth, z up"}))

    def on_block(self, port: str, block: Block) -> None:
        if port == "root":
            self._root_q = np.asarray(block.data["q"][-1], dtype=np.float64)
            return
        q_rel = np.array(block.data["q_rel"], dtype=np.float64)
        if q_rel.shape[1] != self.kin.n:
            raise ValueError(f"node '{self.id}': state has {q_rel.shape[1]} bodies, chain "
                             f"'{self.kin.chain.name}' has {self.kin.n}")
        if self._root_q is not None:
            q_rel[:, 0] = self._root_q
        root_pos = np.broadcast_to(self._root_pos, (len(q_rel), 3))
        pos, quat = self.kin.forward_rel(q_rel, root_pos)
        out = np.empty(len(q_rel), self._dtype)
        out["t_host"] = block.data["t_host"]
        out["pos"] = pos
        out["quat"] = quat
        self.emit(POSE, out, t_host=block.t_host, gap=block.gap)
