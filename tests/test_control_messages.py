"""Control messages: every malformed request gets an error reply; no process goes down.

A real `imuflow run` (supervisor + two worker processes) is sent bad requests over
its real ipc control sockets: wrong types, several frames, deep nesting, non-JSON,
random bytes (hypothesis). Afterwards the same worker pids still answer `ping`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from pipeline.runtime.control import ControlReplyError, ControlTimeout, send_command
from pipeline.runtime.control_request import MAX_DEPTH, BadRequest, parse_request, reply_bytes
from pipeline.runtime.node_loop import ctl_endpoint
from pipeline.runtime.run_dir import find_run
from pipeline.runtime.supervisor import supervisor_ctl_endpoint

GRAPH = """\
version: 1
name: ctltest
nodes:
  - id: src
    kind: nodes.counter.Counter
    params: {total: 0, rate_hz: 100}
  - id: sink
    kind: nodes.relay.Relay
    inputs: {in: src/count}
"""

NESTED = b"[" * 100_000 + b"]" * 100_000
BAD = [
    [b'{"cmd": "ping", "args": 5}'],
    [b'{"cmd": "ping", "args": [1, 2]}'],
    [b'{"cmd": 5}'],
    [b'{"cmd": "ping"}', b'{"cmd": "ping"}'],  # two frames
    [b'{"cmd": "ping"}', b""],
    [NESTED],
    [b'{"cmd": "ping", "args": {"a": ' + NESTED + b"}}"],
    [b"not json at all"],
    [b"\xff\xfe\x00garbage"],
    [b""],
    [b"[]"],
    [b'"ping"'],
    [b'{"cmd": "ping", "args": {"x": NaN}}'],
    [b'{"cmd": "ping", "extra": 1}'],
    [b'{"cmd": "../../etc"}'],
]


def test_schema_refuses_every_bad_request_and_passes_good_ones():
    for frames in BAD:
        with pytest.raises(BadRequest):
            parse_request(frames)
    assert parse_request([b'{"cmd": "ping"}']) == ("ping", {})
    assert parse_request([b'{"cmd": "swap", "args": {"model": "m.onnx", "warmup_s": 1.5}}']) == (
        "swap", {"model": "m.onnx", "warmup_s": 1.5})
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)  # request and args take two levels
    assert parse_request([f'{{"cmd": "x", "args": {{"a": {deep}}}}}'.encode()])[0] == "x"
    # brackets inside strings do not count as nesting
    assert parse_request([json.dumps({"cmd": "x", "args": {"s": "[" * 1000}}).encode()])[0] == "x"


def test_reply_that_is_not_json_becomes_an_error_reply():
    reply = json.loads(reply_bytes({"ok": True, "node": "n", "value": object()}))
    assert reply["ok"] is False and "could not be encoded" in reply["error"]


@given(hs.lists(hs.binary(max_size=300), min_size=0, max_size=3))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_schema_fuzz_raises_only_bad_request(frames):
    try:
        cmd, args = parse_request(frames)
    except BadRequest:
        return
    assert isinstance(cmd, str) and isinstance(args, dict)


def _raw_request(ctx: zmq.Context, endpoint: str, frames: list[bytes],
                 timeout_s: float = 5.0) -> dict:
    """Send raw frames on a REQ socket; return the decoded reply (fails after timeout_s)."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        if frames:
            sock.send_multipart(frames)
        else:
            sock.send(b"")
        assert sock.poll(int(timeout_s * 1000), zmq.POLLIN), f"no reply to {frames!r:.100}"
        return json.loads(sock.recv())
    finally:
        sock.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    """`imuflow run` of a counter -> relay graph in two processes, until the module ends."""
    import tempfile
    runs = tempfile.mkdtemp(prefix="imf")
    config = tmp_path_factory.mktemp("ctl") / "graph.yaml"
    config.write_text(GRAPH)
    env = dict(os.environ, IMUFLOW_RUNS=runs)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(config), "--quiet"],
                            env=env)
    old = os.environ.get("IMUFLOW_RUNS")
    os.environ["IMUFLOW_RUNS"] = runs
    try:
        run_path = _wait_running(n_nodes=2)
        yield proc, run_path
    finally:
        proc.terminate()
        proc.wait(20)
        if old is None:
            os.environ.pop("IMUFLOW_RUNS", None)
        else:
            os.environ["IMUFLOW_RUNS"] = old


def _wait_running(n_nodes: int, timeout_s: float = 90.0) -> Path:
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
            return run.path
        time.sleep(0.2)
    raise AssertionError("graph did not reach the running state")


def _pids(run_path: Path) -> dict[str, int]:
    return {n: send_command(ctl_endpoint(run_path, n), "ping", timeout_s=5)["pid"]
            for n in ("src", "sink")}


@pytest.mark.parametrize("target", ["src", "sink", "supervisor"])
def test_bad_requests_get_error_replies_and_kill_nothing(running, target, monkeypatch):
    proc, run_path = running
    monkeypatch.setenv("IMUFLOW_RUNS", str(run_path.parent))
    before = _pids(run_path)
    endpoint = supervisor_ctl_endpoint(run_path) if target == "supervisor" else \
        ctl_endpoint(run_path, target)
    ctx = zmq.Context()
    try:
        for frames in BAD:
            reply = _raw_request(ctx, endpoint, frames)
            assert reply["ok"] is False and reply["error"].startswith("bad request"), reply
        # a well-formed request still works on the same socket afterwards
        assert _raw_request(ctx, endpoint, [b'{"cmd": "ping"}'])["ok"] is True
    finally:
        ctx.term()
    assert proc.poll() is None, "the run ended"
    assert _pids(run_path) == before, "a worker restarted"


@pytest.mark.parametrize("target", ["sink", "supervisor"])
def test_fuzzed_requests_to_a_running_node(running, monkeypatch, target):
    """Random frames to a control socket: each gets a JSON reply, every process lives on."""
    proc, run_path = running
    monkeypatch.setenv("IMUFLOW_RUNS", str(run_path.parent))
    before = _pids(run_path)
    ctx = zmq.Context()
    endpoint = supervisor_ctl_endpoint(run_path) if target == "supervisor" else \
        ctl_endpoint(run_path, target)

    @given(hs.one_of(
        hs.lists(hs.binary(max_size=200), min_size=1, max_size=3),
        hs.lists(hs.recursive(hs.none() | hs.booleans() | hs.integers() | hs.text(max_size=10),
                              lambda c: hs.lists(c, max_size=3)
                              | hs.dictionaries(hs.text(max_size=5), c, max_size=3),
                              max_leaves=20)
                 .map(lambda v: json.dumps({"cmd": "status" if target == "supervisor" else
                                            "stats", "args": v}).encode()),
                 min_size=1, max_size=1)))
    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    def fuzz(frames: list[bytes]) -> None:
        reply = _raw_request(ctx, endpoint, frames)
        assert isinstance(reply, dict) and "ok" in reply

    try:
        fuzz()
    finally:
        ctx.term()
    assert proc.poll() is None
    assert _pids(run_path) == before


@pytest.mark.parametrize("reply", [b"\xff\xfe not utf-8", b"not json", b"[1, 2]",
                                   b"[" * 100_000 + b"]" * 100_000])
def test_a_reply_that_is_not_a_json_object_is_a_clear_error(reply):
    """A foreign program on the control endpoint: the client names it, no traceback."""
    ctx = zmq.Context.instance()
    server = ctx.socket(zmq.REP)
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    try:
        def answer() -> None:
            if server.poll(5000):
                server.recv()
                server.send(reply)

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ControlReplyError, match="not a JSON object"):
            send_command(f"tcp://127.0.0.1:{port}", "ping", timeout_s=5)
        t.join()
    finally:
        server.close()
