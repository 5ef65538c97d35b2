"""`imuflow command` / `imuflow swap`: which run, which node, and failing fast with what runs.

Real `imuflow run` processes and real CLI subprocesses. A node the run does not have, a
node that died or ended, or a run that has ended fail within 2 s and name what is
running; without --run a graph is chosen only when it is the only one. The 2 s are timed
inside the CLI process, from after its imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.run_dir import find_run
from pipeline.runtime.supervisor import supervisor_ctl_endpoint

REPO = Path(__file__).resolve().parents[1]

ALPHA = """\
version: 1
nodes:
  - id: ok
    kind: nodes.counter.Counter
    params: {total: 0, rate_hz: 100}
  - id: sink
    kind: nodes.relay.Relay
    inputs: {in: ok/count}
"""

BETA = """\
version: 1
nodes:
  - id: src
    kind: tests.fault_nodes.CrashAfter
    params: {after: 20}
    restart: never
  - id: fin
    kind: nodes.counter.Counter
    params: {total: 20, rate_hz: 100}
  - id: fsink
    kind: nodes.relay.Relay
    inputs: {in: fin/count}
  - id: keep
    kind: nodes.counter.Counter
    params: {total: 0, rate_hz: 10}
"""


# the CLI in a subprocess, timed from after its imports (start-up varies with the machine's
# load by seconds; the 2 s are the command's own)
TIMED_MAIN = ("import sys, time; from pipeline.cli import main; t0 = time.monotonic(); "
              "rc = main(sys.argv[1:]); print(f'ELAPSED {time.monotonic() - t0:.3f}', "
              "file=sys.stderr); sys.exit(rc)")


def _imuflow(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``imuflow ARGS``; return the process and the seconds main() took."""
    return _imuflow_all(args)[0]


def _imuflow_all(*calls: tuple[str, ...]) -> list[tuple[subprocess.CompletedProcess, float]]:
    """Run several ``imuflow ARGS`` at once (independent commands against the same runs)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    procs = [subprocess.Popen([sys.executable, "-c", TIMED_MAIN, *args], cwd=REPO, env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in calls]
    done = []
    for args, proc in zip(calls, procs):
        stdout, stderr = proc.communicate(timeout=90)
        took = float(stderr.rsplit("ELAPSED ", 1)[1].split()[0])
        done.append((subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), took))
    return done


def _start(path: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(path), "--name", name,
                             "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait(name: str, ready, timeout_s: float = 60.0) -> None:  # noqa: ANN001 - predicate
    """Wait until the supervisor status of run ``name`` satisfies ``ready(nodes)``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run = find_run(name)
            nodes = send_command(supervisor_ctl_endpoint(run.path), "status",
                                 timeout_s=1)["status"]["nodes"]
            if ready(nodes):
                return
        except (LookupError, ControlTimeout, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"run {name} never reached the expected state")


# each failure must come at once (< 2 s here when idle), not after --timeout (30-60 s): 6 s is a
# 3x margin for a loaded 2-core CI machine and still 5x under the shortest timeout
FAIL_FAST_S = 6.0


@pytest.mark.timeout(180)
def test_commands_name_what_runs_and_fail_fast(write_graph):
    alpha = _start(write_graph(ALPHA, "alpha.yaml"), "alpha")
    beta = None
    try:
        _wait("alpha", lambda n: all(s.get("state") == "running" for s in n.values()))
        bad_node = (("command", "nosuch", "ping", "--timeout", "30"),
                    ("swap", "nosuch", "models/knee.onnx", "--timeout", "30"))
        (miss, _), (ok, _), *bad = _imuflow_all(
            ("command", "sink", "ping", "--run", "nosuch"), ("command", "sink", "ping"),
            *bad_node)
        # a run name that does not exist
        assert miss.returncode == 1
        assert "no running imuflow graph named 'nosuch'" in miss.stderr
        assert "running now: 'alpha' (alpha.yaml: ok, sink)" in miss.stderr

        # the only run is chosen; a node it does not have is refused at once, naming its nodes
        assert ok.returncode == 0 and '"state": "running"' in ok.stdout, ok.stderr
        for args, (proc, took) in zip(bad_node, bad):
            assert proc.returncode == 1, proc
            assert "run 'alpha' has no node 'nosuch'; its nodes: ok, sink" in proc.stderr
            assert took < FAIL_FAST_S, (args, took)

        beta = _start(write_graph(BETA, "beta.yaml"), "beta")
        _wait("beta", lambda n: n.get("src", {}).get("state") == "dead"
              and n.get("fsink", {}).get("state") == "stopped"
              and n.get("keep", {}).get("state") == "running")
        (two, _), (named, _), (dead, took_dead), (ended, took_ended) = _imuflow_all(
            ("command", "sink", "ping"), ("command", "sink", "ping", "--run", "alpha"),
            ("command", "src", "ping", "--run", "beta", "--timeout", "30"),
            ("swap", "fsink", "models/knee.onnx", "--run", "beta", "--timeout", "60"))
        # two runs: no guessing
        assert two.returncode == 1 and "2 graphs are running" in two.stderr, two.stderr
        assert "'alpha' (alpha.yaml: ok, sink)" in two.stderr and "'beta' (beta.yaml" in two.stderr
        assert "pass --run NAME" in two.stderr
        assert named.returncode == 0, named.stderr

        # a node that died, one whose streams ended: their state and the running nodes
        assert dead.returncode == 1 and took_dead < FAIL_FAST_S, (dead.stderr, took_dead)
        assert "node 'src' of run 'beta' died (exit code 1)" in dead.stderr
        assert "running nodes: keep (running)" in dead.stderr
        assert ended.returncode == 1 and took_ended < FAIL_FAST_S, (ended.stderr, took_ended)
        assert "node 'fsink' of run 'beta' has ended" in ended.stderr

        # a graph that has ended
        alpha.send_signal(signal.SIGINT)
        alpha.wait(20)
        gone, took = _imuflow("command", "sink", "ping", "--run", "alpha", "--timeout", "30")
        assert gone.returncode == 1 and took < FAIL_FAST_S, (gone.stderr, took)
        assert "no running imuflow graph named 'alpha'" in gone.stderr
        assert "running now: 'beta' (beta.yaml: src, fin, fsink, keep)" in gone.stderr
    finally:
        for proc in (alpha, beta):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
