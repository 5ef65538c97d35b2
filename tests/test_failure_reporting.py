"""Failures reach the user: exit codes, `status` of dead nodes, restarted nodes slow to start.

Real supervisor, real worker processes and sockets; the recorder is made to fail by
a file-size limit (RLIMIT_FSIZE: writes fail with EFBIG, as on a full disk).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from pipeline.cli.status_cmd import table
from pipeline.recording.session_reader import read_streams
from pipeline.runtime.graph import load_graph
from pipeline.runtime.node_loop import ctl_endpoint
from pipeline.runtime.supervisor import Supervisor
from tests.test_recorder import REPO

CRASHING = """\
version: 1
nodes:
  - id: src
    kind: tests.fault_nodes.CrashAfter
    params: {{after: 30}}
    restart: {restart}
  - id: ok
    kind: nodes.counter.Counter
    params: {{total: 0, rate_hz: 100}}
  - id: sink
    kind: nodes.relay.Relay
    inputs: {{in: ok/count}}
"""


def test_dead_node_shows_as_dead_and_the_run_exits_non_zero(write_graph):
    sup = Supervisor(load_graph(write_graph(CRASHING.format(restart="never"))))
    sup.start()
    t0 = time.monotonic()
    code = sup.run(until=lambda: sup.dead_nodes() != [] and len(sup.status) == 3
                   or time.monotonic() - t0 > 60)
    assert sup.dead_nodes() == ["src"]
    snap = sup.snapshot()
    src = snap["nodes"]["src"]
    assert src["state"] == "dead" and src["alive"] is False and src["exit_code"] == 1
    assert src["rate_out_hz"] == 0.0  # not its last report's rate
    assert snap["nodes"]["ok"]["state"] == "running"
    text = table(snap)
    assert any(line.split()[:2] == ["src", "dead"] for line in text.splitlines())
    assert code == 1


def test_restarting_node_shows_as_restarting(write_graph):
    sup = Supervisor(load_graph(write_graph(CRASHING.format(restart="on-failure"))))
    sup.start()
    seen: set[str] = set()
    t0 = time.monotonic()

    def watch() -> bool:
        seen.add(sup.snapshot()["nodes"]["src"]["state"])
        return sup.workers["src"].restarts >= 1 or time.monotonic() - t0 > 60

    assert sup.run(until=watch) == 0
    assert "restarting" in seen and "dead" not in seen


def test_restart_back_off_doubles_from_0_25_s_to_5_s_and_resets_after_10_s(write_graph):
    """The supervisor's restart delays for a group whose process keeps failing (exit 1, as a
    node that raises), taken from a real supervisor watching real processes that exit at once;
    the process lifetime is set through started_at instead of waited for."""
    sup = Supervisor(load_graph(write_graph(CRASHING.format(restart="on-failure"))))
    w = sup.workers["src"]
    try:
        def delay_after_failure(lived_s: float) -> float:
            w.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
            w.proc.wait()
            w.started_at = time.monotonic() - lived_s
            before = time.monotonic()
            sup._watch_workers()
            assert w.proc is None and w.exit_code == 1 and not w.dead
            return w.restart_at - before

        got = [delay_after_failure(0.0) for _ in range(7)]
        assert got == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0], abs=0.05)
        assert delay_after_failure(9.0) == pytest.approx(5.0, abs=0.05)  # not yet stable
        assert delay_after_failure(10.5) == pytest.approx(0.25, abs=0.05)  # ran 10 s: reset
        assert delay_after_failure(0.0) == pytest.approx(0.5, abs=0.05)
    finally:
        w.proc = None
        sup.stop()


def test_restarted_node_that_does_not_answer_start_is_retried_not_fatal(write_graph):
    """A stand-in process answers `ping` with ready but never answers `start` (stopped)."""
    sup = Supervisor(load_graph(write_graph(CRASHING.format(restart="on-failure"))))
    w = sup.workers["src"]
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(ctl_endpoint(sup.run_dir, "src"))
    w.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    w.awaiting_start = {"src"}
    try:
        import threading

        def answer_ping_only() -> None:
            if rep.poll(5000):
                rep.recv()
                rep.send_json({"ok": True, "state": "ready"})  # then `start` is never answered

        t = threading.Thread(target=answer_ping_only)
        t.start()
        t0 = time.monotonic()
        sup._watch_workers()  # must not raise ControlTimeout
        t.join()
        assert w.awaiting_start == {"src"}  # asked again on the next round
        assert time.monotonic() - t0 < 10
    finally:
        w.proc.kill()
        w.proc.wait()
        w.proc = None
        rep.close()
        ctx.term()
        sup.stop()


def test_record_exits_non_zero_when_the_recorder_dies(tmp_path, runs_dir):
    """The report's full disk: the recorder fails at a write; record stops and says so."""
    config = tmp_path / "sim.yaml"
    config.write_text(f"version: 1\nchain: {REPO}/configs/chains/knee.yaml\nnodes:\n"
                      "  - id: sim\n    kind: drivers.sim.SimImu\n    params: {rate_hz: 200}\n")
    out = tmp_path / "s.mcap"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "record", str(config), "-o",
                           str(out), "--duration", "120", "--flush-s", "0.2"],
                          capture_output=True, text=True, timeout=180, cwd=REPO,
                          preexec_fn=small_files, env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the recorder stopped early" in proc.stderr
    assert time.monotonic() - t0 < 100  # it did not wait for --duration
    streams = read_streams(Path(out))  # what was flushed before the fault is readable
    assert any(len(s.data) for s in streams.values())


def test_graph_whose_source_died_for_good_ends_by_itself(write_graph):
    """Consumers of a dead source are told its streams ended: no wait for an EOS that never
    comes."""
    sup = Supervisor(load_graph(write_graph("""\
        version: 1
        nodes:
          - id: src
            kind: tests.fault_nodes.CrashAfter
            params: {after: 30}
            restart: never
          - id: mid
            kind: nodes.relay.Relay
            inputs: {in: src/count}
          - id: sink
            kind: nodes.relay.Relay
            inputs: {in: mid/out}
        """)))
    sup.start()
    t0 = time.monotonic()
    code = sup.run(until=lambda: time.monotonic() - t0 > 60)
    assert all(w.finished for w in sup.workers.values()), "graph did not end by itself"
    assert code == 1 and sup.dead_nodes() == ["src"]
    assert sup.snapshot()["nodes"]["sink"]["state"] == "stopped"
