"""The runtime around one node: sockets, input queues, control commands, status, drain.

A node's life: ``setup`` -> wait until every expected subscriber is connected
(state ``ready``) -> wait for the supervisor's ``start`` -> run (poll a source,
or hand each input message to ``on_block``) -> on ``stop`` or when every input
ended: drain, end the outputs (EOS), ``teardown``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

import zmq

from pipeline.runtime.bus import Publisher, Subscriber
from pipeline.runtime.control_request import BadRequest, parse_request, reply_bytes
from pipeline.runtime.curve import ServerKeys
from pipeline.runtime.direct import DirectEmitter
from pipeline.runtime.graph import GraphSpec, NodeSpec
from pipeline.runtime.jit_watch import JitCounter, watch
from pipeline.runtime.message import Block
from pipeline.runtime.node import GraphContext, Node, Source
from pipeline.runtime.params import build_params
from pipeline.runtime.ports import QueuePolicy
from pipeline.runtime.realtime import enter_realtime, hold_cpu_awake
from pipeline.runtime.registry import resolve

log = logging.getLogger("imuflow.node_loop")

STATUS_PERIOD_S = 1.0
DRAIN_TIMEOUT_S = 1.0
READY_TIMEOUT_S = 120.0
END_LINGER_MS = 60_000
# an input whose node ended stays open this long after the last input arrived, waiting for
# its end of stream; then it is taken as ended (ZeroMQ drops it silently in a full queue)
END_QUIET_S = 1.0


def pub_endpoints(run_dir: Path, node_id: str) -> dict[str, str]:
    """Endpoints a node's publisher binds: inproc (same process) and ipc (other processes)."""
    return {"inproc": f"inproc://{node_id}.pub", "ipc": f"ipc://{run_dir}/{node_id}.pub"}


def ctl_endpoint(run_dir: Path, node_id: str) -> str:
    """Endpoint of a node's control socket (JSON request/reply)."""
    return f"ipc://{run_dir}/{node_id}.ctl"


def connect_direct(loops: dict[str, "NodeLoop"], graph: GraphSpec) -> None:
    """Wire the direct edges (``direct_groups``) between the loops of one process, before run()."""
    for loop in loops.values():
        for port, edges in loop.spec.inputs.items():
            for edge in edges:
                if edge.node in loops and graph.direct_edge(loop.spec, edge):
                    loops[edge.node].direct_out.setdefault(edge.source, []).append((loop, port))
                    loop.direct_in.add(edge.source)


class NodeLoop:
    """Runs one node of a graph in the calling thread."""

    def __init__(self, spec: NodeSpec, graph: GraphSpec, ctx: zmq.Context, run_dir: Path,
                 stop: threading.Event) -> None:
        self.spec, self.graph, self.ctx, self.run_dir = spec, graph, ctx, run_dir
        self.stop_requested = stop
        self.state = "created"
        self._started = threading.Event()
        self.setup_done = threading.Event()  # set after setup (or its failure)
        self.node: Node | None = None
        self._pending: tuple[concurrent.futures.Future, float] | None = None
        self._eos: set[str] = set()
        self._producer_done: set[str] = set()  # inputs whose node ended normally
        self._status_due = 0.0
        self._last_status: dict[str, Any] = {}
        # direct delivery (pipeline/runtime/direct.py), wired by connect_direct() before run():
        self.lock = threading.RLock()  # on_block, on_command, status: never two at once
        self.direct_out: dict[str, list[tuple[NodeLoop, str]]] = {}  # topic -> consumers
        self.direct_in: set[str] = set()  # sources that call deliver() instead of the bus
        self._last_activity = time.monotonic()
        self._last_input = time.monotonic()  # the last block from any input
        self._ended = False  # on_eos ran and the outputs were ended
        self.jit = JitCounter()  # numba compilations on the data path (replaced when ready)

    # -- setup -----------------------------------------------------------------------------
    def _build(self) -> None:
        spec, graph = self.spec, self.graph
        cls = resolve(spec.kind)
        params = build_params(cls.Params, spec.params, where=f"node '{spec.id}': ",
                              file=str(graph.file))
        eps = pub_endpoints(self.run_dir, spec.id)
        endpoints = [eps["inproc"], eps["ipc"]] + ([spec.endpoint] if spec.endpoint else [])
        keys = ServerKeys(Path(spec.curve["secret"]), Path(spec.curve["authorized"])) \
            if spec.curve else None
        if spec.endpoint and not spec.curve:
            log.warning("[%s] endpoint %s has no CURVE keys: any user of this host can connect "
                        "and read its streams (see docs/runtime.md, Security model)", spec.id,
                        spec.endpoint)
        self.pub = Publisher(self.ctx, endpoints, allow_remote=spec.allow_remote, server_keys=keys)
        context = GraphContext(config_file=graph.file, chain_file=graph.chain,
                               run_dir=self.run_dir, model_dirs=graph.model_dirs,
                               sources={p: [e.source for e in es] for p, es in spec.inputs.items()},
                               sensors=dict(graph.sensors))
        emitter = DirectEmitter(self.pub, self.direct_out) if self.direct_out else self.pub
        self.node: Node = cls(spec.id, params, context=context, emitter=emitter)
        if isinstance(emitter, DirectEmitter) and not isinstance(self.node, Source):
            emitter.stats = self.node.stats  # consumers' time is theirs, not this node's
        self.subs: dict[str, Subscriber] = {}
        self.queues: dict[str, deque[Block]] = {}
        for port, edges in spec.inputs.items():
            sources = [(self._connect_endpoint(e.node), e.source) for e in edges
                       if e.source not in self.direct_in]
            if sources:
                self.subs[port] = Subscriber(self.ctx, sources)
            maxlen = edges[0].queue_size if edges[0].policy is QueuePolicy.DROP_OLDEST else None
            self.queues[port] = deque(maxlen=maxlen)
        self.expected_eos = {e.source for es in spec.inputs.values() for e in es}
        self.ctl = self.ctx.socket(zmq.REP)
        self.ctl.setsockopt(zmq.LINGER, 0)
        ctl_path = ctl_endpoint(self.run_dir, spec.id)
        if os.path.exists(ctl_path[6:]):
            os.unlink(ctl_path[6:])
        self.ctl.bind(ctl_path)

    def _connect_endpoint(self, node_id: str) -> str:
        src = self.graph.node(node_id)
        if src.group == self.spec.group:
            return pub_endpoints(self.run_dir, node_id)["inproc"]
        return pub_endpoints(self.run_dir, node_id)["ipc"]

    def _expected_subscribers(self) -> dict[str, int]:
        out = {}
        for topic in self.spec.outputs:
            full = f"{self.spec.id}/{topic}"
            n = self.graph.subscribers(full) - len(self.direct_out.get(full, ()))
            if n:
                out[f"{self.spec.id}/{topic}"] = n
        return out

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Build, set up, run and tear down the node; exceptions propagate after teardown."""
        try:
            self._build()
        except BaseException:
            self.setup_done.set()
            raise
        node = self.node
        try:
            self.state = "setup"
            try:
                node.setup()
            finally:
                self.setup_done.set()
            self.state = "waiting_subscribers"
            self._wait_ready()
            self.state = "ready"
            self.jit = watch()  # from here on, a numba compilation is on the data path
            while not self._started.is_set() and not self.stop_requested.is_set():
                self._serve_control(50)
            self.state = "running"
            if self.spec.group in self.graph.realtime_groups:
                enter_realtime(self.spec.id)  # after setup: loading and JIT run at normal priority
                hold_cpu_awake(self.spec.id)
            if isinstance(node, Source):
                self._run_source(node)
            else:
                self._run_inputs()
            self.state = "stopped"
        finally:
            with self.lock:  # direct producers may still call deliver(): they find it ended
                self._ended = True
                try:
                    node.teardown()
                finally:
                    self._publish_status(force=True)
                    self._close()

    def _wait_ready(self) -> None:
        expected = self._expected_subscribers()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stop_requested.is_set():
            subs = self.pub.poll_subscriptions()
            missing = {t: k for t, k in expected.items() if subs[t] < k}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node '{self.spec.id}': subscribers never connected: {missing}")
            self._serve_control(20)

    def _run_source(self, node: Source) -> None:
        node.on_start()
        try:
            while not self.stop_requested.is_set():
                self._serve_control(0)
                prev = self.jit.enter()
                try:
                    more = node.poll(0.02)
                finally:
                    self.jit.leave(prev)
                if not more:
                    break
                self._publish_status()
        finally:
            node.on_stop()
        self._end_outputs()

    def _run_inputs(self) -> None:
        poller = zmq.Poller()
        poller.register(self.ctl, zmq.POLLIN)
        by_socket = {}
        for port, sub in self.subs.items():
            poller.register(sub.socket, zmq.POLLIN)
            by_socket[sub.socket] = port
        drain_deadline = None
        # with only direct inputs this thread serves commands and status: wake it rarely,
        # each wake-up takes the GIL from the thread that runs the data path
        timeout_ms = 20 if by_socket else 100
        while not self._ended:
            ready = dict(poller.poll(timeout_ms))
            if self.ctl in ready or self._pending:
                self._serve_control(0)
            with self.lock:
                for sock, port in by_socket.items():
                    if sock in ready:
                        self._enqueue(port, self.subs[port].drain())
                progressed = self._process_queues()
                self._publish_status()
                if ready or progressed:
                    self._last_activity = time.monotonic()
                if progressed:
                    self._last_input = self._last_activity
                self._end_quiet_inputs()
                if self._eos >= self.expected_eos:
                    self._finish()
                    return
            if self.stop_requested.is_set():
                now = time.monotonic()
                drain_deadline = drain_deadline or now + DRAIN_TIMEOUT_S
                if now > drain_deadline or now - self._last_activity > 0.2:
                    with self.lock:
                        self._finish()
                    return

    def deliver(self, port: str, blk: Block) -> None:
        """Direct delivery: handle ``blk`` now, in the caller's (the producer's) thread."""
        if not self.setup_done.is_set():
            self.setup_done.wait(READY_TIMEOUT_S)
        with self.lock:
            if self._ended or self.node is None:
                if self.node is not None:
                    self.node.stats.drops += 1  # arrived after this node ended its outputs
                return
            self._handle(port, blk)
            self._last_activity = self._last_input = time.monotonic()
            if blk.eos and self._eos >= self.expected_eos:
                self._finish()

    def producers_ended(self, nodes: Collection[str]) -> list[str]:
        """Nodes ``nodes`` ended their streams normally: return this node's inputs from them.

        Their end of stream is normally on its way; if it does not come within END_QUIET_S
        of the last input, those inputs are taken as ended (a full ZeroMQ queue drops it
        without a word, and this node would wait for ever).
        """
        with self.lock:
            topics = sorted(t for t in self.expected_eos - self._eos
                            if t.split("/", 1)[0] in nodes)
            self._producer_done.update(topics)
        return topics

    def _end_quiet_inputs(self) -> None:
        """Take inputs whose node ended as ended once no input came for END_QUIET_S."""
        lost = self._producer_done - self._eos
        if lost and time.monotonic() - self._last_input > END_QUIET_S:
            self.node.log.warning("input(s) %s: their node ended, its end of stream never came "
                                  "(dropped in a full queue); taking them as ended",
                                  ", ".join(sorted(lost)))
            self._eos.update(lost)

    def _finish(self) -> None:
        """Inputs ended or drained: flush the node and end its outputs (once; lock held)."""
        if not self._ended:
            self._ended = True
            self.node.on_eos()
            self._end_outputs()

    def _enqueue(self, port: str, blocks: list[Block]) -> None:
        q = self.queues[port]
        for blk in blocks:
            if q.maxlen is not None and len(q) == q.maxlen:
                self.node.stats.drops += 1
            q.append(blk)

    def _process_queues(self) -> bool:
        progressed = False
        for port, q in self.queues.items():
            while q:
                self._handle(port, q.popleft())
                progressed = True
                if self._pending:
                    self._serve_control(0)
        return progressed

    def _handle(self, port: str, blk: Block) -> None:
        stats = self.node.stats
        if blk.gap:
            stats.gaps += 1
            stats.missed += max(blk.missed, 0)
        if blk.eos:
            self.node.on_stream_end(port, blk)
            self._eos.add(blk.topic)
            return
        stats.record_in(blk.n)
        prev = self.jit.enter()
        t0 = time.perf_counter_ns()
        try:
            self.node.on_block(port, blk)
        finally:
            stats.busy_ns += time.perf_counter_ns() - t0
            self.jit.leave(prev)

    def _end_outputs(self) -> None:
        for topic in self.spec.outputs:
            self.node.emit_eos(topic)

    # -- control and status --------------------------------------------------------------------
    def _serve_control(self, timeout_ms: int) -> None:
        if self._pending:
            future, t0 = self._pending
            if future.done():
                self._pending = None
                reply = _future_reply(future)
                reply.setdefault("elapsed_ms", (time.monotonic() - t0) * 1e3)
                self.ctl.send(reply_bytes(reply))
            return
        if not self.ctl.poll(timeout_ms, zmq.POLLIN):
            return
        try:
            cmd, args = parse_request(self.ctl.recv_multipart())
        except BadRequest as exc:
            self.node.log.warning("refused a control request: %s", exc)
            self.ctl.send(reply_bytes({"ok": False, "node": self.spec.id,
                                       "error": f"bad request: {exc}"}))
            return
        t0 = time.monotonic()
        with self.lock:
            self._answer(cmd, args, t0)

    def _answer(self, cmd: str, args: dict, t0: float) -> None:
        reply = self._builtin(cmd, args)
        if reply is None:
            try:
                reply = self.node.on_command(cmd, args)
            except Exception as exc:  # noqa: BLE001 - the reply carries the error to the caller
                self.node.log.exception("command %s failed", cmd)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if isinstance(reply, concurrent.futures.Future):
                self._pending = (reply, t0)
                return
        if not isinstance(reply, dict):
            reply = {"ok": False, "error": f"command '{cmd}' answered {type(reply).__name__}, "
                                           "not a mapping"}
        reply.setdefault("node", self.spec.id)
        self.ctl.send(reply_bytes(reply))

    def _builtin(self, cmd: str, args: dict) -> dict | None:
        if cmd == "inputs_gone":  # the supervisor: these nodes died for good, end their streams
            gone = args.get("nodes")
            if not isinstance(gone, list) or not all(isinstance(n, str) for n in gone):
                return {"ok": False, "error": "inputs_gone needs args {\"nodes\": [node ids]}"}
            ended = sorted(t for t in self.expected_eos if t.split("/", 1)[0] in gone)
            self._eos.update(ended)
            if ended and self.node is not None:
                self.node.log.warning("input(s) %s end: their node died and is not restarted",
                                      ", ".join(ended))
            return {"ok": True, "ended": ended}
        if cmd == "inputs_ended":  # the supervisor: these nodes' processes ended normally
            done = args.get("nodes")
            if not isinstance(done, list) or not all(isinstance(n, str) for n in done):
                return {"ok": False, "error": "inputs_ended needs args {\"nodes\": [node ids]}"}
            return {"ok": True, "ending": self.producers_ended(done)}
        if cmd == "ping":
            return {"ok": True, "state": self.state, "pid": os.getpid()}
        if cmd == "start":
            self._started.set()
            return {"ok": True, "state": self.state}
        if cmd == "stop":
            self.stop_requested.set()
            return {"ok": True}
        if cmd == "stats":
            return {"ok": True, "stats": self._last_status}
        return None

    def _publish_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._status_due:
            return
        self._status_due = now + STATUS_PERIOD_S
        stats = self.node.stats
        stats.bad_messages = sum(s.bad_messages for s in self.subs.values())
        snap = stats.snapshot()
        self._last_status = {"node": self.spec.id, "kind": self.spec.kind, "pid": os.getpid(),
                             "group": self.spec.group, "state": self.state, **snap,
                             **self.jit.report(self.node.log)}
        self.pub.poll_subscriptions()
        self.node.emit_json("status", self._last_status)

    def _close(self) -> None:
        for sub in self.subs.values():
            sub.close()
        self.ctl.close()
        # a stream that ended by itself must deliver its tail and EOS to slow subscribers;
        # on a stop request the supervisor's 2 s deadline wins
        self.pub.close(linger_ms=500 if self.stop_requested.is_set() else END_LINGER_MS)


def _future_reply(future: concurrent.futures.Future) -> dict:
    try:
        return dict(future.result())
    except Exception as exc:  # noqa: BLE001 - reported to the command's caller
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
