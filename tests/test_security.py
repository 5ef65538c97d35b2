"""Endpoints: loopback by default; other interfaces only with CURVE keys; wrong keys get nothing."""

from __future__ import annotations

import socket
import time

import pytest
import zmq

from nodes.remote_input import RemoteInput
from pipeline.runtime.bus import Subscriber
from pipeline.runtime.curve import ClientKeys, create_keys
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.supervisor import Supervisor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GRAPH = """\
version: 1
nodes:
  - id: src
    kind: nodes.counter.Counter
    params: {{total: 0, rate_hz: 200}}
    endpoint: {endpoint}
{extra}
"""


def test_non_loopback_endpoint_needs_allow_remote(write_graph):
    path = write_graph(GRAPH.format(endpoint="tcp://0.0.0.0:5999", extra=""))
    with pytest.raises(ConfigError, match="reachable from other hosts; use tcp://127.0.0.1"):
        load_graph(path)


def test_allow_remote_without_curve_keys_is_refused(write_graph):
    path = write_graph(GRAPH.format(endpoint="tcp://0.0.0.0:5999",
                                    extra="    allow_remote: true"))
    with pytest.raises(ConfigError, match="add `curve: {secret:"):
        load_graph(path)


def _received(sub: Subscriber, seconds: float) -> int:
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.socket.poll(50, zmq.POLLIN):
            n += len(sub.drain())
    return n


def test_only_a_client_with_an_authorised_key_gets_data(write_graph, tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys, ("server", "client"))
    create_keys(tmp_path / "other", ("server", "intruder"))  # valid keys, not authorised
    port = free_port()
    path = write_graph(GRAPH.format(
        endpoint=f"tcp://0.0.0.0:{port}",
        extra=f"    allow_remote: true\n    curve: {{secret: {keys}/server.key_secret, "
              f"authorized: {keys}/authorized}}"))
    sup = Supervisor(load_graph(path))
    sup.start()
    ctx = zmq.Context.instance()
    # the host's own non-loopback-style address is not available in a sandbox: connect over
    # loopback to the 0.0.0.0 bind, which exercises the same CURVE handshake
    target = f"tcp://127.0.0.1:{port}"
    good = Subscriber(ctx, [(target, "src/count")],
                      client_keys=ClientKeys(keys / "client.key_secret", keys / "server.key"))
    wrong = Subscriber(ctx, [(target, "src/count")], client_keys=ClientKeys(
        tmp_path / "other" / "intruder.key_secret", keys / "server.key"))
    plain = Subscriber(ctx, [(target, "src/count")])
    try:
        t0 = time.monotonic()
        sup.run(until=lambda: time.monotonic() - t0 > 0.5)
        counts = {name: _received(s, 2.0) for name, s in
                  (("good", good), ("wrong", wrong), ("plain", plain))}
    finally:
        for s in (good, wrong, plain):
            s.close()
        sup.stop()
    assert counts["good"] > 100
    assert counts["wrong"] == 0 and counts["plain"] == 0


def test_remote_input_republishes_a_remote_stream(write_graph, tmp_path):
    port = free_port()
    path = write_graph(GRAPH.format(endpoint=f"tcp://127.0.0.1:{port}", extra=""))
    sup = Supervisor(load_graph(path))
    sup.start()
    try:
        node = RemoteInput.create("bridge", endpoint=f"tcp://127.0.0.1:{port}",
                                  topics=["src/count"])
        t0 = time.monotonic()
        while len(node.emitted) < 20 and time.monotonic() - t0 < 10:
            node.poll(0.05)
        node.teardown()
    finally:
        sup.stop()
    assert len(node.emitted) >= 20
    assert node.emitted[0].topic == "bridge/count"
    values = [int(b.data[0]) for b in node.emitted]
    assert values == list(range(values[0], values[0] + len(values)))
