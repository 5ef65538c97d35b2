"""Node base classes: a small lifecycle (setup, on_block, on_command, teardown) and emit.

A node never touches sockets: the runtime (:mod:`pipeline.runtime.node_loop`) owns the
receive loop, queues, control socket and stats, and hands each message to
``on_block``. For tests a node runs standalone with :meth:`Node.create`, which
collects what it emits in ``node.emitted``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from pipeline.runtime.message import Block, Flag, Header, StreamInfo

_GAP = int(Flag.GAP)
from pipeline.runtime.params import NoParams, build_params
from pipeline.runtime.ports import Input
from pipeline.runtime.stats import NodeStats


class Emitter(Protocol):
    """Where a node's output goes: the bus publisher, or a list in tests."""

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int: ...


@dataclass
class GraphContext:
    """What a node knows about the graph it runs in.

    Attributes:
        config_file: the graph YAML (None for standalone nodes).
        chain_file: the graph's kinematic chain file, if it names one.
        run_dir: folder of this run's sockets and state files.
        model_dirs: folders models may be loaded from (nothing outside is loaded).
        sources: for each input port, the ``node/topic`` names wired to it.
        sensors: the graph's sensor map: physical sensor id, address or recorded name ->
            the chain's IMU site (``sensors:`` in the graph YAML); drivers and replay apply it.
    """

    config_file: Path | None = None
    chain_file: Path | None = None
    run_dir: Path | None = None
    model_dirs: tuple[Path, ...] = (Path("models"),)
    sources: dict[str, list[str]] = field(default_factory=dict)
    sensors: dict[str, str] = field(default_factory=dict)

    def site(self, name: str, address: str = "") -> str:
        """The IMU site a sensor feeds: mapped by its address, else by its name, else its name."""
        return self.sensors.get(address) or self.sensors.get(name) or name

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path from a config: as given, else next to the config or its parent."""
        p = Path(path).expanduser()
        if p.is_absolute() or p.exists() or self.config_file is None:
            return p
        for base in (self.config_file.parent, self.config_file.parent.parent):
            if (base / p).exists():
                return base / p
        return p


class CollectingEmitter:
    """Keeps emitted messages as :class:`Block` objects (standalone nodes and tests)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._seq: dict[str, int] = {}

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int:
        """Store the message; arrays are copied and made read-only, as on the bus."""
        seq = self._seq.get(info.stream, 0)
        self._seq[info.stream] = seq + 1
        if flags & Flag.JSON or data is None:
            n = 1 if flags & Flag.JSON else 0
        else:
            data = np.array(data, copy=True)
            data.flags.writeable = False
            n = len(data)
        header = Header(info=info, seq=seq, t_host=t_host, t_sensor=t_sensor, n=n, flags=flags)
        self.blocks.append(Block(topic=topic, header=header, data=data,
                                 gap=bool(flags & Flag.GAP)))
        return seq


class NodeLogger(logging.LoggerAdapter):
    """Adds the node id to every record (``%(node)s`` in the format)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.setdefault("extra", {})
        extra.setdefault("node", self.extra["node"])
        return f"[{self.extra['node']}] {msg}", kwargs


class Node:
    """Base class of every node: subclass it, declare ports and Params, implement on_block.

    Class attributes:
        inputs: port name -> :class:`Input` (accepted message kinds, policy).
        outputs: topics this node publishes (message kinds, e.g. ``imu.frame``).
        Params: frozen dataclass of the node's YAML ``params``.
    """

    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type] = NoParams
    main_thread: ClassVar[bool] = False  # True: run_main_thread() gets the process's main thread

    def __init__(self, node_id: str, params: Any, *, context: GraphContext | None = None,
                 emitter: Emitter | None = None) -> None:
        self.id = node_id
        self.params = params
        self.context = context or GraphContext()
        self.log = NodeLogger(logging.getLogger(f"imuflow.{type(self).__module__}"),
                              {"node": node_id})
        self.stats = NodeStats()
        self._emitter: Emitter = emitter or CollectingEmitter()
        self._out_infos: dict[str, StreamInfo] = {}

    @classmethod
    def create(cls, node_id: str = "test", context: GraphContext | None = None,
               **params: Any) -> "Node":
        """Build a standalone node from keyword params (validated), run its setup, return it."""
        node = cls(node_id, build_params(cls.Params, params, where=f"node '{node_id}': "),
                   context=context)
        node.setup()
        return node

    @property
    def emitted(self) -> list[Block]:
        """Blocks emitted so far (standalone nodes only)."""
        if not isinstance(self._emitter, CollectingEmitter):
            raise AttributeError("emitted is only kept for standalone nodes (Node.create)")
        return self._emitter.blocks

    @classmethod
    def sensors_out(cls, params: Any, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """IMU names this node's outputs carry, from those on its inputs (``None``: unknown).

        Checked when a graph is loaded (:mod:`pipeline.runtime.sensor_check`), before
        anything runs: a node that needs sensors its inputs do not carry raises
        ConfigError naming both lists. The default passes its inputs' names through.
        """
        return upstream

    @classmethod
    def check_files(cls, params: Any, context: GraphContext) -> None:
        """Check the files the node will read (model, session, chain) without running it.

        Called by ``imuflow validate``; raises an ImuflowError (or OSError) that says
        what is wrong. The default checks nothing.
        """

    # -- lifecycle, overridden by subclasses ------------------------------------------------
    def setup(self) -> None:
        """Open files, sessions and devices; allocate state. Called once before data flows."""

    def on_block(self, port: str, block: Block) -> None:
        """Handle one incoming message on ``port``."""

    def on_command(self, command: str, args: dict) -> dict:
        """Answer a control command; return a JSON-able reply with at least ``ok``."""
        return {"ok": False, "error": f"node '{self.id}' does not know command '{command}'"}

    def on_stream_end(self, port: str, block: Block) -> None:
        """One input stream ended (``block`` is its empty end-of-stream message)."""

    def on_eos(self) -> None:
        """All inputs have ended: flush what is pending (the runtime then ends the outputs)."""

    def teardown(self) -> None:
        """Release everything setup opened; always called, even after errors."""

    def run_main_thread(self, stop: threading.Event) -> None:
        """For ``main_thread`` nodes (GUI): run in the main thread after setup until ``stop``.

        ``on_block`` keeps running in the node's own thread meanwhile; share data
        through thread-safe buffers. Return when the window closes or ``stop`` is set.
        """

    # -- output ---------------------------------------------------------------------------------
    def declare(self, topic: str, info: StreamInfo) -> StreamInfo:
        """Set the default stream info of an output topic (its stream id must be node/topic)."""
        self._out_infos[topic] = info
        return info

    def output_info(self, topic: str) -> StreamInfo:
        """Default stream info of an output topic (declared, or a bare one)."""
        info = self._out_infos.get(topic)
        if info is None:
            info = self._out_infos[topic] = StreamInfo(stream=f"{self.id}/{topic}", kind=topic)
        return info

    def emit(self, topic: str, data: Any, *, t_host: int, t_sensor: int = -1,
             info: StreamInfo | None = None, gap: bool = False) -> None:
        """Publish ``data`` (n, *shape) on ``topic``; ``t_host``/``t_sensor`` in int64 ns."""
        flags = _GAP if gap else 0  # plain ints on the hot path (enum operators are slow)
        info = info or self.output_info(topic)
        self._emitter.publish(f"{self.id}/{topic}", info, data, t_host=t_host, t_sensor=t_sensor,
                              flags=flags)
        self.stats.record_out(len(data), t_host, time.monotonic_ns())

    def emit_json(self, topic: str, obj: Any) -> None:
        """Publish a JSON object on ``topic`` (status-like topics)."""
        self._emitter.publish(f"{self.id}/{topic}", self.output_info(topic), obj,
                              t_host=time.monotonic_ns(), flags=Flag.JSON)

    def emit_eos(self, topic: str, info: StreamInfo | None = None) -> None:
        """Tell subscribers that ``topic`` (or the stream ``info``) ends here."""
        self._emitter.publish(f"{self.id}/{topic}", info or self.output_info(topic), None,
                              t_host=time.monotonic_ns(), flags=Flag.EOS)


class Source(Node):
    """A node without inputs that produces data: drivers, simulators, replay."""

    @classmethod
    def sensors_out(cls, params: Any, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """IMU names this source will emit (after the graph's sensor map); None: unknown."""
        return None

    def on_start(self) -> None:
        """Start streaming (called when every node of the graph is ready)."""

    def poll(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for data and emit it; return False when the stream ended."""
        raise NotImplementedError

    def on_stop(self) -> None:
        """Stop streaming on the device (called before teardown)."""
