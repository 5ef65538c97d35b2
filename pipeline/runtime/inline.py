"""Inline execution: every node of a graph in the calling thread, messages handed on by call.

For offline work on recordings (``imuflow track``): no processes, no sockets, no
waiting for readiness; sources are polled in turn until they end, and each message
goes to its consumers' ``on_block`` at once, built exactly as a direct group builds
it (:class:`pipeline.runtime.direct.DirectEmitter`), so nodes compute what they
compute in a live graph. End of stream follows the runtime's rule: a node's
``on_eos`` runs when every input it reads has ended, then its outputs end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.runtime.direct import DirectEmitter
from pipeline.runtime.graph import GraphSpec, NodeSpec
from pipeline.runtime.message import Block, Flag, StreamInfo
from pipeline.runtime.node import GraphContext, Node, Source
from pipeline.runtime.params import build_params
from pipeline.runtime.registry import resolve

log = logging.getLogger("imuflow.inline")

Tap = Callable[[Block], None]


class _NoBus:
    """The publisher of an inline node: numbers messages per stream, sends nothing."""

    epoch = 0

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int:
        seq = self._seq.get(info.stream, 0)
        self._seq[info.stream] = seq + 1
        return seq

    def send_frames(self, frames: list[bytes]) -> None:
        raise RuntimeError("inline graphs have no bus to send raw frames on")


class _Inlet:
    """A node's inputs: hands blocks to it and ends its outputs once all its inputs ended."""

    def __init__(self, node: Node, spec: NodeSpec) -> None:
        self.node, self.spec = node, spec
        self.expected = {e.source for es in spec.inputs.values() for e in es}
        self.ended: set[str] = set()

    def deliver(self, port: str, block: Block) -> None:
        if not block.header.flags & Flag.EOS:
            self.node.on_block(port, block)
            return
        self.node.on_stream_end(port, block)
        self.ended.add(block.topic)
        if self.ended >= self.expected:
            self.node.on_eos()
            end_outputs(self.node, self.spec)


class _TapInlet:
    """Hands every non-EOS block of a topic to a callback (the caller's sink)."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap

    def deliver(self, port: str, block: Block) -> None:
        if not block.header.flags & Flag.EOS:
            self.tap(block)


def end_outputs(node: Node, spec: NodeSpec) -> None:
    """End every output topic of ``node`` (EOS to its consumers)."""
    for topic in spec.outputs:
        node.emit_eos(topic)


class InlineGraph:
    """The nodes of ``graph``, built and wired for one thread.

    Args:
        graph: a loaded graph; every node runs (drop GUI and recorder nodes before).
        taps: ``node/topic`` -> callback receiving each block of that topic.
    """

    def __init__(self, graph: GraphSpec, taps: dict[str, Tap] | None = None) -> None:
        self.graph = graph
        routes: dict[str, list[tuple[Any, str]]] = {}
        for topic, tap in (taps or {}).items():
            routes.setdefault(topic, []).append((_TapInlet(tap), "tap"))
        self.nodes: list[tuple[NodeSpec, Node]] = []
        for spec in graph.nodes:
            cls = resolve(spec.kind)
            params = build_params(cls.Params, spec.params, where=f"node '{spec.id}': ",
                                  file=str(graph.file))
            context = GraphContext(config_file=graph.file, chain_file=graph.chain,
                                   model_dirs=graph.model_dirs, sensors=dict(graph.sensors),
                                   sources={p: [e.source for e in es]
                                            for p, es in spec.inputs.items()})
            node = cls(spec.id, params, context=context, emitter=DirectEmitter(_NoBus(), routes))
            inlet = _Inlet(node, spec)
            for port, edges in spec.inputs.items():
                for e in edges:
                    routes.setdefault(e.source, []).append((inlet, port))
            self.nodes.append((spec, node))

    def run(self, on_poll: Callable[[], None] | None = None) -> tuple[float, float]:
        """Set up every node, run the sources to their end, flush, tear down.

        Returns (set-up, data) wall times, s: setting up the nodes (files, models, compiled
        kernels) and running the data through them until the last output ended.
        """
        ready: list[Node] = []
        try:
            t0 = time.perf_counter()
            for spec, node in self.nodes:
                node.setup()
                ready.append(node)
            t1 = time.perf_counter()
            sources = [(s, n) for s, n in self.nodes if isinstance(n, Source)]
            for _, node in sources:
                node.on_start()
            while sources:
                for item in list(sources):
                    spec, node = item
                    if not node.poll(0.1):
                        node.on_stop()
                        end_outputs(node, spec)
                        sources.remove(item)
                if on_poll is not None:
                    on_poll()
            return t1 - t0, time.perf_counter() - t1
        finally:
            for node in reversed(ready):
                try:
                    node.teardown()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    log.exception("[%s] teardown failed", node.id)
