"""The runtime end to end: real worker processes, real ZeroMQ sockets, the real supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.graph import load_graph
from pipeline.runtime.node_loop import ctl_endpoint
from pipeline.runtime.run_dir import find_run
from pipeline.runtime.supervisor import STOP_TIMEOUT_S, Supervisor, supervisor_ctl_endpoint

CHAIN = """\
version: 1
name: chain
{direct}nodes:
  - id: src
    kind: nodes.counter.Counter
    params: {{total: {total}, block: {block}}}
    group: {g_src}
  - id: mid
    kind: nodes.relay.Relay
    group: {g_mid}
    inputs: {{in: src/count}}
  - id: sink
    kind: nodes.sequence_check.SequenceCheck
    group: {g_sink}
    params: {{report: {report}}}
    inputs: {{in: mid/out}}
"""


def run_to_end(graph_path: Path, timeout_s: float = 120.0) -> Supervisor:
    sup = Supervisor(load_graph(graph_path))
    sup.start()
    t0 = time.monotonic()
    code = sup.run(until=lambda: time.monotonic() - t0 > timeout_s)
    assert code == 0
    assert all(w.finished for w in sup.workers.values()), "graph did not end by itself"
    return sup


@pytest.mark.parametrize("block", [1, 256])
@pytest.mark.parametrize("layout", ["processes", "threads", "mixed", "direct", "direct_mixed"])
def test_100k_samples_arrive_complete_in_order(block, layout, write_graph, tmp_path):
    """Every layout delivers everything; direct_mixed: a direct pair, then the bus to the sink."""
    groups = {"processes": ("a", "b", "c"), "threads": ("a", "a", "a"),
              "mixed": ("a", "b", "b"), "direct": ("a", "a", "a"),
              "direct_mixed": ("a", "a", "b")}[layout]
    direct = "direct_groups: [a]\n" if layout.startswith("direct") else ""
    report = tmp_path / "report.json"
    path = write_graph(CHAIN.format(total=100_000, block=block, report=report, direct=direct,
                                    g_src=groups[0], g_mid=groups[1], g_sink=groups[2]))
    run_to_end(path)
    r = json.loads(report.read_text())
    assert r["received"] == 100_000
    assert (r["lost"], r["duplicated"], r["out_of_order"], r["gaps_flagged"]) == (0, 0, 0, 0)
    assert r["expected_next"] == {"mid/out": 100_000}


@pytest.mark.parametrize("layout", ["processes", "threads"])
def test_an_end_of_stream_lost_in_a_full_queue_still_ends_the_graph(layout, write_graph,
                                                                    tmp_path, capfd):
    """The sink stalls while the source sends more than the queue between them holds, so
    ZeroMQ drops the end of stream; once the source has ended and the sink's input went
    quiet, the sink takes it as ended instead of waiting for ever."""
    report, go = tmp_path / "report.json", tmp_path / "go"
    total = 250_000  # over PUB_HWM + SUB_HWM one-sample messages
    path = write_graph(f"""\
        version: 1
        name: lost_eos
        nodes:
          - id: src
            kind: nodes.counter.Counter
            params: {{total: {total}, block: 1}}
            group: a
          - id: sink
            kind: nodes.sequence_check.SequenceCheck
            group: {"b" if layout == "processes" else "a"}
            params: {{report: {report}, hold_until: {go}}}
            inputs: {{in: src/count}}
        """)
    sup = Supervisor(load_graph(path))
    sup.start()
    t0 = time.monotonic()

    def until() -> bool:
        if not go.exists() and sup.status.get("src", {}).get("state") == "stopped":
            go.touch()  # the source has sent all it will: let the sink go on
        return time.monotonic() - t0 > 120

    assert sup.run(until=until) == 0
    assert all(w.finished for w in sup.workers.values()), "graph did not end by itself"
    r = json.loads(report.read_text())
    assert 0 < r["received"] < total  # the queue did overflow: its tail and the EOS were dropped
    assert "src/count: their node ended, its end of stream never came" in capfd.readouterr().err


def test_kill_9_of_a_node_is_restarted_and_downstream_counts_a_gap(write_graph, tmp_path):
    report = tmp_path / "report.json"
    text = CHAIN.format(total=0, block=1, report=report, direct="", g_src="a", g_mid="b",
                        g_sink="c")
    path = write_graph(text.replace("params: {total: 0, block: 1}",
                                    "params: {total: 0, block: 1, rate_hz: 500}"))
    sup = Supervisor(load_graph(path))
    sup.start()
    try:
        deadline = time.monotonic() + 30
        state = {"killed": False}

        def until() -> bool:
            now = time.monotonic()
            if not state["killed"] and now > deadline - 28:
                pid = send_command(ctl_endpoint(sup.run_dir, "mid"), "ping")["pid"]
                os.kill(pid, signal.SIGKILL)
                state["killed"] = True
            snap = sup.snapshot()["nodes"]
            sink = snap["sink"]
            return (state["killed"] and snap["mid"]["restarts"] >= 1 and sink.get("gaps", 0) >= 1
                    and snap["mid"].get("state") == "running") or now > deadline

        sup.run(until=until)
        snap = sup.snapshot()["nodes"]
    finally:
        sup.stop()
    assert snap["mid"]["restarts"] == 1
    assert snap["sink"]["gaps"] >= 1  # the restarted publisher's new epoch is a marked gap
    r = json.loads(report.read_text())
    assert r["gaps_flagged"] >= 1
    assert r["received"] > 0 and r["duplicated"] == 0


def test_ctrl_c_stops_every_process_within_2_s(write_graph, tmp_path, runs_dir):
    report = tmp_path / "report.json"
    text = CHAIN.format(total=0, block=1, report=report, direct="", g_src="a", g_mid="b",
                        g_sink="c")
    path = write_graph(text.replace("block: 1}", "block: 1, rate_hz: 200}"))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(path), "--quiet"],
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    children = _wait_running(runs_dir, n_nodes=3)
    run_folder = find_run(None).path
    time.sleep(1.0)  # data flowing
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    elapsed = time.monotonic() - t0
    # the 2 s promise is kept by the supervisor killing what is left after STOP_TIMEOUT_S;
    # here the workers must stop by themselves (drained: no kill), and the wall time gets a
    # 3x margin over that deadline for a loaded CI machine (1.4 s measured under load)
    assert STOP_TIMEOUT_S < 2.0
    assert "did not stop" not in proc.stderr.read()
    assert elapsed < 3 * STOP_TIMEOUT_S, f"stop took {elapsed:.2f} s"
    alive = [p for p in children if _alive(p)]
    assert alive == [], f"orphans left: {alive}"
    assert not run_folder.exists()  # the run folder (sockets, manifest) goes at stop
    r = json.loads(report.read_text())
    assert r["received"] > 100 and r["lost"] == 0  # drained in order, nothing lost


def test_workers_exit_when_the_supervisor_is_killed(write_graph, tmp_path, runs_dir):
    """kill -9 of the supervisor: no orphans (workers get SIGTERM from Linux, PR_SET_PDEATHSIG)."""
    text = CHAIN.format(total=0, block=1, report=tmp_path / "report.json", direct="", g_src="a",
                        g_mid="b", g_sink="c")
    path = write_graph(text.replace("block: 1}", "block: 1, rate_hz: 200}"))
    _kill_supervisor_expect_no_orphans(path, runs_dir, n_nodes=3, exit_s=10)  # drain <= 1 s


def test_a_worker_whose_shutdown_hangs_still_exits_when_the_supervisor_is_killed(
        write_graph, runs_dir):
    """A node whose teardown never returns: after the supervisor's kill -9 its worker is
    ended by the stop alarm (worker.STOP_ALARM_S after the SIGTERM), not left an orphan."""
    from pipeline.runtime.worker import STOP_ALARM_S

    path = write_graph("""\
version: 1
nodes:
  - id: hang
    kind: tests.fault_nodes.HangOnStop
    group: a
    params: {rate_hz: 100}
""")
    _kill_supervisor_expect_no_orphans(path, runs_dir, n_nodes=1, exit_s=STOP_ALARM_S + 5)


def _kill_supervisor_expect_no_orphans(path: Path, runs_dir: Path, n_nodes: int,
                                       exit_s: float) -> None:
    """Run graph ``path`` (one worker per node), kill -9 its supervisor once every node runs,
    and assert that every worker has exited within ``exit_s`` seconds."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(path), "--quiet"],
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    children: list[int] = []
    try:
        children += _wait_running(runs_dir, n_nodes=n_nodes)
        assert len(children) == n_nodes and proc.pid not in children
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + exit_s
        # exited workers are reparented to init, which may reap them late: a zombie (Z) has
        # exited, only a process still running is an orphan
        while (alive := [p for p in children if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == [], f"orphans left: {[_proc_state(p) for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _wait_running(runs_dir: Path, n_nodes: int, timeout_s: float = 60.0) -> list[int]:
    """Wait until every node of the one run in runs_dir is running; return worker pids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run = find_run(None)
            nodes = send_command(supervisor_ctl_endpoint(run.path), "status",
                                 timeout_s=1)["status"]["nodes"]
        except (LookupError, ControlTimeout, OSError):
            time.sleep(0.2)
            continue
        if len(nodes) == n_nodes and all(n.get("state") == "running" for n in nodes.values()):
            return sorted({n["pid"] for n in nodes.values()})
        time.sleep(0.2)
    raise AssertionError("graph did not reach the running state")


# a process that ignores SIGTERM and sleeps in one long C call: only watch_parent can end it
_DEAF_CHILD = """
import os, signal, threading, time
from pipeline.runtime.worker import watch_parent
signal.signal(signal.SIGTERM, signal.SIG_IGN)
threading.Thread(target=watch_parent, args=(os.getppid(), threading.Event(), "deaf"),
                 daemon=True).start()
print(os.getpid(), flush=True)
time.sleep(120)
"""
_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


# the same, and its log handler's lock is held for ever: the log call after the parent's end
# blocks, so only the alarm armed before it can end the process
_DEAF_CHILD_STUCK_LOG = _DEAF_CHILD.replace(
    "import os, signal, threading, time\n",
    "import logging, os, signal, threading, time\nlogging.basicConfig()\n"
    "logging.getLogger().handlers[0].acquire()\n")


def test_a_worker_ends_when_its_supervisor_is_gone_even_if_logging_blocks() -> None:
    """watch_parent arms the kernel's alarm before it logs: a process whose log handler is
    stuck still exits within STOP_ALARM_S of its parent's kill -9 (SIGALRM)."""
    assert "acquire()" in _DEAF_CHILD_STUCK_LOG
    _assert_exits_after_its_parent_is_killed(_DEAF_CHILD_STUCK_LOG)


def test_a_worker_whose_supervisor_ended_before_it_started_exits_at_once(tmp_path) -> None:
    """A worker spawned by a supervisor that was killed while the worker was still importing
    has been re-parented before it could ask for the death signal: it must not run on as an
    orphan. It sees that its parent is not the supervisor named in its environment and exits
    with a message, before touching the run folder."""
    from pipeline.runtime.worker import SUPERVISOR_PID_ENV

    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.worker", str(tmp_path / "no-run"), "a"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1],
        env=dict(os.environ, **{SUPERVISOR_PID_ENV: "1"}), check=False)
    assert proc.returncode == 1
    assert "supervisor (pid 1) ended before this worker started" in proc.stderr
    assert not (tmp_path / "no-run").exists()


def test_a_worker_ends_when_its_supervisor_is_gone_even_without_a_signal() -> None:
    """watch_parent: a process that never answers SIGTERM (as a worker whose main thread is
    blocked in C cannot) still exits within STOP_ALARM_S of its parent's kill -9."""
    _assert_exits_after_its_parent_is_killed(_DEAF_CHILD)


def _assert_exits_after_its_parent_is_killed(child_script: str) -> None:
    """Run ``child_script`` under _PARENT, kill -9 the parent, and require the child gone
    within STOP_ALARM_S + PARENT_POLL_S (+3 s of slack); the child is killed afterwards
    whatever happened."""
    from pipeline.runtime.worker import PARENT_POLL_S, STOP_ALARM_S

    parent = subprocess.Popen([sys.executable, "-c", _PARENT, child_script],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert _running(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + STOP_ALARM_S + PARENT_POLL_S + 3.0
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child), _proc_state(child)
    finally:
        if parent.poll() is None:
            parent.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _proc_state(pid: int) -> str:
    """pid, state letter, command line, signal masks and where each thread waits (kernel
    wchan), from /proc (for failure messages)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-80:]
        masks = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                 if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))]
        threads = [f"{t.name} {(t / 'comm').read_text().strip()} {(t / 'wchan').read_text()}"
                   for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return f"{pid} gone"
    state, ppid = stat.rsplit(')', 1)[1].split()[:2]
    return f"{pid} {state} ppid {ppid} {cmd} {masks} threads {threads}"


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_malformed_messages_are_counted_and_skipped(write_graph, tmp_path):
    report = tmp_path / "report.json"
    path = write_graph(f"""\
    version: 1
    nodes:
      - id: src
        kind: tests.runtime_nodes.MalformedSource
      - id: sink
        kind: nodes.sequence_check.SequenceCheck
        params: {{report: {report}}}
        inputs: {{in: src/count}}
    """)
    sup = Supervisor(load_graph(path))
    sup.start()
    t0 = time.monotonic()
    sup.run(until=lambda: sup.snapshot()["nodes"]["sink"].get("bad_messages", 0) >= 3
            and sup.snapshot()["nodes"]["sink"].get("samples_in", 0) >= 10
            or time.monotonic() - t0 > 30)
    snap = sup.snapshot()["nodes"]["sink"]
    assert snap["bad_messages"] == 3
    r = json.loads(report.read_text())
    assert r["received"] >= 10 and r["lost"] == 0 and r["gaps_flagged"] == 0
