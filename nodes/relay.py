"""Relay: a test node that republishes what it receives, for runtime tests and benches."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.runtime.message import Block
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input


class Relay(Node):
    """Pass every block from ``in`` to ``out`` unchanged (times pass through).

    Ports:
        in: any message kind with a numpy payload.
        out (out): the same samples, stream id ``<node>/out``.
    """

    inputs = {"in": Input(accepts=("*",))}
    outputs = ("out",)

    @dataclass(frozen=True)
    class Params:
        fail_after: int = 0  # raise after this many blocks (fault-injection tests); 0 = never

    def setup(self) -> None:
        self._count = 0

    def on_block(self, port: str, block: Block) -> None:
        self._count += 1
        if self.params.fail_after and self._count >= self.params.fail_after:
            raise RuntimeError(f"fail_after={self.params.fail_after} reached (fault injection)")
        info = replace(block.info, stream=f"{self.id}/out", kind="out")
        self.emit("out", block.data, t_host=block.t_host, t_sensor=block.header.t_sensor,
                  info=self._info(info), gap=block.gap)

    def _info(self, info):  # keep one object per distinct info so the encoder cache hits
        cur = self.output_info("out")
        if cur != info:
            cur = self.declare("out", info)
        return cur
