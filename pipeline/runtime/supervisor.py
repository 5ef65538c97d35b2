"""Supervisor: starts one worker process per group, hands out ``start``, restarts failures.

Life of a run: write the run folder and manifest -> spawn workers -> wait until
every node answers ``ready`` (set up, all its subscribers connected) -> send
``start`` to every node -> watch: a worker that dies is restarted with
exponential backoff (logged, counted in status, downstream sees a gap) -> the
run ends when every worker has exited after its streams ended, or on
Ctrl-C/SIGTERM, which drains the graph and stops every process within 2 s.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zmq

from pipeline.runtime.bus import Publisher, Subscriber
from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.control_request import BadRequest, parse_request, reply_bytes
from pipeline.runtime.graph import GraphSpec
from pipeline.runtime.node_loop import ctl_endpoint, pub_endpoints
from pipeline.runtime.run_dir import create_run_dir, write_manifest
from pipeline.runtime.worker import EXIT_CONFIG, SUPERVISOR_PID_ENV

log = logging.getLogger("imuflow.supervisor")

STOP_TIMEOUT_S = 1.8
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 5.0
STABLE_AFTER_S = 10.0


@dataclass
class _Worker:
    group: str
    nodes: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    awaiting_start: set[str] = field(default_factory=set)
    finished: bool = False
    exit_code: int | None = None  # of the last process, once it exited
    dead: bool = False  # exited with a failure and will not be restarted


def supervisor_ctl_endpoint(run_dir: Path) -> str:
    """Control endpoint of a run's supervisor (commands: stop, status)."""
    return f"ipc://{run_dir}/supervisor.ctl"


class Supervisor:
    """Runs a checked graph as a set of worker processes."""

    def __init__(self, graph: GraphSpec, *, name: str | None = None,
                 on_status: Callable[[dict], None] | None = None,
                 ready_timeout_s: float = 120.0) -> None:
        self.graph = graph
        self.name = name or graph.name
        self.on_status = on_status
        self.ready_timeout_s = ready_timeout_s
        self.run_dir = create_run_dir(self.name)
        write_manifest(self.run_dir, name=self.name, config=graph.file,
                       nodes=[n.id for n in graph.nodes])
        self.workers = {g: _Worker(g, ids) for g, ids in graph.groups.items()}
        self.ctx = zmq.Context()
        self.status: dict[str, dict] = {}
        self._stopping = False
        self._restart_policy = {n.id: n.restart for n in graph.nodes}

    # -- process management ----------------------------------------------------------------
    def _spawn(self, w: _Worker) -> None:
        w.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.worker", str(self.run_dir), w.group],
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which drains in order
            env=dict(os.environ, PYTHONUNBUFFERED="1", **{SUPERVISOR_PID_ENV: str(os.getpid())}))
        w.started_at = time.monotonic()
        w.awaiting_start = set(w.nodes)
        w.restart_at = None
        log.info("started group '%s' (%s) as pid %d", w.group, ", ".join(w.nodes), w.proc.pid)

    def start(self) -> None:
        """Spawn every worker, wait until all nodes are ready, then start the data flow."""
        for w in self.workers.values():
            self._spawn(w)
        deadline = time.monotonic() + self.ready_timeout_s
        pending = {nid for w in self.workers.values() for nid in w.nodes}
        while pending:
            for nid in sorted(pending):
                if self._ping_state(nid) == "ready":
                    pending.discard(nid)
            self._check_early_exit()
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nodes not ready after {self.ready_timeout_s:g} s: "
                                   f"{', '.join(sorted(pending))}; see their log lines above")
            time.sleep(0.02)
        self._status_sub = Subscriber(self.ctx, [
            (pub_endpoints(self.run_dir, n.id)["ipc"], f"{n.id}/status") for n in self.graph.nodes])
        self._status_pub = Publisher(self.ctx, [f"ipc://{self.run_dir}/supervisor.pub"])
        self._ctl = self.ctx.socket(zmq.REP)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.bind(supervisor_ctl_endpoint(self.run_dir))
        # start sinks first so nothing downstream misses the first samples
        for node in reversed(self.graph.nodes):
            send_command(ctl_endpoint(self.run_dir, node.id), "start", ctx=self.ctx)
        for w in self.workers.values():
            w.awaiting_start.clear()
        log.info("graph '%s' running (%d nodes, %d processes); run folder %s", self.name,
                 len(self.graph.nodes), len(self.workers), self.run_dir)

    def _check_early_exit(self) -> None:
        for w in self.workers.values():
            if w.proc and w.proc.poll() is not None:
                self.stop()
                why = "its configuration is wrong" if w.proc.returncode == EXIT_CONFIG else (
                    f"it exited with status {w.proc.returncode}")
                raise RuntimeError(f"node(s) {', '.join(w.nodes)} could not start: {why}; "
                                   "see the error above")

    def _ping_state(self, node_id: str) -> str | None:
        try:
            reply = send_command(ctl_endpoint(self.run_dir, node_id), "ping", timeout_s=0.2,
                                 ctx=self.ctx)
        except ControlTimeout:
            return None
        return reply.get("state")

    def run(self, until: Callable[[], bool] | None = None) -> int:
        """Supervise until the graph ends, a signal arrives, or ``until()`` is true; then stop.

        Returns 0, or 1 when a node died and was not restarted (``restart: never``, a
        configuration error): the run did not do all it was asked to.
        """
        try:
            self.supervise(until)
        finally:
            self.stop()
        dead = self.dead_nodes()
        if dead:
            log.error("graph '%s' ended with dead node(s): %s", self.name, ", ".join(dead))
            return 1
        return 0

    def dead_nodes(self) -> list[str]:
        """Nodes whose process failed and will not be restarted."""
        return [n for w in self.workers.values() if w.dead for n in w.nodes]

    def supervise(self, until: Callable[[], bool] | None = None) -> bool:
        """Watch the workers without stopping them afterwards; True if the graph ended itself.

        Returns on Ctrl-C/SIGTERM, a ``stop`` control command, ``until()`` being true, or
        when every stream ended.
        """
        stop_now = False

        def request_stop(*_: object) -> None:
            nonlocal stop_now
            stop_now = True

        old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            next_report = time.monotonic() + 1.0
            while not stop_now and not (until and until()):
                if self._serve_control():
                    log.info("stop requested over the control channel")
                    return False
                self._watch_workers()
                self._collect_status()
                if all(w.finished for w in self.workers.values()):
                    log.info("graph '%s' finished: every stream ended", self.name)
                    return True
                if time.monotonic() >= next_report:
                    next_report += 1.0
                    self._report()
            return False
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _serve_control(self) -> bool:
        """Answer one pending control request; return True if it asked the graph to stop."""
        if not self._ctl.poll(0, zmq.POLLIN):
            return False
        try:
            cmd, _ = parse_request(self._ctl.recv_multipart())
        except BadRequest as exc:
            log.warning("refused a control request: %s", exc)
            self._ctl.send(reply_bytes({"ok": False, "node": "supervisor",
                                        "error": f"bad request: {exc}"}))
            return False
        if cmd == "stop":
            self._ctl.send(reply_bytes({"ok": True, "node": "supervisor"}))
            return True
        if cmd in ("status", "ping"):
            reply = {"ok": True, "node": "supervisor", "status": self.snapshot()}
        else:
            reply = {"ok": False, "node": "supervisor",
                     "error": f"unknown command '{cmd}'; known: stop, status, ping"}
        self._ctl.send(reply_bytes(reply))
        return False

    def _watch_workers(self) -> None:
        now = time.monotonic()
        for w in self.workers.values():
            if w.finished:
                continue
            if w.proc is not None and w.proc.poll() is not None:
                code = w.exit_code = w.proc.returncode
                w.proc = None
                if code == 0 and not self._stopping:
                    w.finished = True
                    self._tell_consumers(w.nodes, "inputs_ended")
                    continue
                if code == EXIT_CONFIG:
                    log.error("group '%s' (%s) stopped: it cannot run (its configuration, "
                              "file or model; see the error above); not restarting", w.group,
                              ", ".join(w.nodes))
                    w.finished = w.dead = True
                    self._tell_consumers(w.nodes, "inputs_gone")
                    continue
                if any(self._restart_policy[n] == "never" for n in w.nodes):
                    log.error("group '%s' (%s) exited with status %s; restart policy is "
                              "'never': it stays dead", w.group, ", ".join(w.nodes), code)
                    w.finished = w.dead = True
                    self._tell_consumers(w.nodes, "inputs_gone")
                    continue
                if now - w.started_at > STABLE_AFTER_S:
                    w.failures_in_row = 0
                delay = min(BACKOFF_START_S * 2 ** w.failures_in_row, BACKOFF_MAX_S)
                w.failures_in_row += 1
                w.restart_at = now + delay
                log.warning("group '%s' (%s) died with status %s; restarting in %.2f s",
                            w.group, ", ".join(w.nodes), code, delay)
            if w.proc is None and w.restart_at is not None and now >= w.restart_at:
                w.restarts += 1
                self._spawn(w)
                log.warning("restarted group '%s' (restart #%d)", w.group, w.restarts)
            if w.proc is not None and w.awaiting_start:
                for nid in sorted(w.awaiting_start):
                    if self._ping_state(nid) == "ready" and self._send_start(nid):
                        w.awaiting_start.discard(nid)

    def _tell_consumers(self, ended: list[str], command: str) -> None:
        """Tell the running consumers of the ``ended`` nodes that their streams ended.

        ``inputs_gone``: the nodes died for good and no end of stream comes, so a graph whose
        source died still ends when its other streams end. ``inputs_ended``: their process
        ended normally; a consumer whose end of stream was lost (a full queue drops it
        silently) takes the streams as ended once its inputs go quiet, instead of waiting
        for ever.
        """
        group_of = {nid: w for w in self.workers.values() for nid in w.nodes}
        for spec in self.graph.nodes:
            if spec.id in ended or not any(e.node in ended for es in spec.inputs.values()
                                           for e in es):
                continue
            if group_of[spec.id].proc is None:
                continue
            try:
                send_command(ctl_endpoint(self.run_dir, spec.id), command,
                             {"nodes": list(ended)}, timeout_s=2.0, ctx=self.ctx)
            except ControlTimeout:  # a busy node reads the request later; it may have missed it
                level = logging.INFO if command == "inputs_ended" else logging.WARNING
                log.log(level, "node '%s' did not answer '%s' within 2 s; if the request never "
                        "reached it, it may wait for the streams of %s", spec.id, command,
                        ", ".join(ended))

    def _send_start(self, node_id: str) -> bool:
        """Send ``start`` to a restarted node; False (tried again later) if it does not answer."""
        try:
            send_command(ctl_endpoint(self.run_dir, node_id), "start", timeout_s=2.0,
                         ctx=self.ctx)
        except ControlTimeout:
            log.warning("restarted node '%s' did not answer 'start' within 2 s; trying again",
                        node_id)
            return False
        return True

    def _collect_status(self) -> None:
        blk = self._status_sub.recv(block=False)
        deadline = time.monotonic() + 0.05
        while blk is None and time.monotonic() < deadline:
            if self._status_sub.socket.poll(10, zmq.POLLIN):
                blk = self._status_sub.recv()
        while blk is not None:
            if isinstance(blk.data, dict):
                self.status[blk.data.get("node", "?")] = blk.data
            blk = self._status_sub.recv()

    def snapshot(self) -> dict:
        """Status of every node plus supervisor facts (restarts, pids)."""
        nodes = {}
        for w in self.workers.values():
            for nid in w.nodes:
                node = dict(self.status.get(nid, {"node": nid, "state": "starting"}),
                            restarts=w.restarts, alive=w.proc is not None)
                if w.proc is None and not (w.finished and not w.dead):
                    # its last report is stale: the process is gone
                    node["state"] = "dead" if w.dead else "restarting"
                    node["exit_code"] = w.exit_code
                    for key in ("rate_in_hz", "rate_out_hz"):
                        node[key] = 0.0
                nodes[nid] = node
        return {"graph": self.name, "run_dir": str(self.run_dir), "nodes": nodes}

    def _report(self) -> None:
        snap = self.snapshot()
        self._status_pub.publish_json("supervisor/status", snap)
        if self.on_status:
            self.on_status(snap)

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Drain and stop every worker within STOP_TIMEOUT_S, then kill what is left."""
        if self._stopping:
            return
        self._stopping = True
        procs = [w.proc for w in self.workers.values() if w.proc and w.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in %.1f s; killing it", p.pid, STOP_TIMEOUT_S)
                p.kill()
                p.wait()
        for closer in ("_status_sub", "_status_pub", "_ctl"):
            if hasattr(self, closer):
                getattr(self, closer).close()
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)
