"""Local and remote security: private run folders and control sockets, model folders, endpoints.

Endpoints: loopback by default; other interfaces only with CURVE keys; wrong keys get nothing.
Run folders: another local user cannot plant the runs folder, a run folder or a control socket.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest
import zmq

from nodes.remote_input import RemoteInput
from pipeline.cli import main as cli_main
from pipeline.runtime.bus import Subscriber
from pipeline.runtime.control import send_command
from pipeline.runtime.curve import ClientKeys, create_keys
from pipeline.runtime.errors import ConfigError, ModelRejected, UnsafeRunFolder
from pipeline.runtime.graph import load_graph
from pipeline.runtime.model_files import check_inside
from pipeline.runtime.params import coerce
from pipeline.runtime.run_dir import create_run_dir, find_run, live_runs, runs_root
from pipeline.runtime.supervisor import Supervisor

OTHER_UID = 54321  # a local user that is not us (tests that chown need root)


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


# -- the runs folder, run folders and control sockets: private to the user ---------------------

def _plant(path: Path, *, mode: int | None = None, uid: int | None = None) -> Path:
    """Make ``path`` a folder as another local user could leave it (mode 777 / foreign owner)."""
    path.mkdir(exist_ok=True)
    if uid is not None:
        os.chown(path, uid, -1)
    if mode is not None:
        os.chmod(path, mode)
    return path


needs_root = pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")


def test_runs_folder_writable_by_others_is_refused(tmp_path, monkeypatch):
    root = _plant(tmp_path / "runs", mode=0o777)
    monkeypatch.setenv("IMUFLOW_RUNS", str(root))
    with pytest.raises(UnsafeRunFolder, match=r"writable by other users \(mode 777\)"):
        runs_root()
    with pytest.raises(UnsafeRunFolder):
        find_run(None)


@needs_root
def test_runs_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    root = _plant(tmp_path / "runs", mode=0o700, uid=OTHER_UID)
    monkeypatch.setenv("IMUFLOW_RUNS", str(root))
    with pytest.raises(UnsafeRunFolder, match=f"belongs to uid {OTHER_UID}, not to you"):
        runs_root()


def test_planted_default_runs_folder_is_refused(tmp_path, monkeypatch):
    """The attack of the report: a runs folder made first in the shared tmp by someone else."""
    shared = _plant(tmp_path / "tmp", mode=0o1777)
    monkeypatch.delenv("IMUFLOW_RUNS")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    _plant(shared / f"imuflow-{os.getuid()}", mode=0o777)
    with pytest.raises(UnsafeRunFolder, match="another user|writable by other users"):
        runs_root()
    (shared / f"imuflow-{os.getuid()}").rmdir()
    (shared / f"imuflow-{os.getuid()}").symlink_to(tmp_path)  # a link to a folder of ours
    with pytest.raises(UnsafeRunFolder, match="symbolic link"):
        runs_root()
    (shared / f"imuflow-{os.getuid()}").unlink()
    root = runs_root()  # made fresh: private
    assert root == shared / f"imuflow-{os.getuid()}"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_runs_folder_goes_under_xdg_runtime_dir(tmp_path, monkeypatch):
    runtime = _plant(tmp_path / "xdg", mode=0o700)
    monkeypatch.delenv("IMUFLOW_RUNS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert runs_root() == runtime / "imuflow"
    assert stat.S_IMODE((runtime / "imuflow").stat().st_mode) == 0o700
    os.chmod(runtime, 0o777)  # an unusable runtime dir: fall back to a private tmp folder
    assert runs_root().name == f"imuflow-{os.getuid()}"


@needs_root
def test_planted_run_folder_is_not_listed(runs_dir):
    """A run folder with a manifest naming a live pid, owned by someone else, is never found."""
    planted = _plant(runs_dir / "graph-1", mode=0o700)
    (planted / "manifest.json").write_text(json.dumps(
        {"name": "graph", "config": "/x.yaml", "supervisor_pid": os.getpid(), "nodes": ["sim"]}))
    assert [r.path for r in live_runs()] == [planted]  # ours: found
    os.chown(planted, OTHER_UID, -1)
    assert live_runs() == []
    os.chown(planted, os.getuid(), -1)
    os.chmod(planted, 0o777)
    assert live_runs() == []


def _bound_rep(ctx: zmq.Context, path: Path) -> zmq.Socket:
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"ipc://{path}")
    return sock


def test_control_request_to_a_socket_in_an_open_folder_is_refused(tmp_path):
    ctx = zmq.Context()
    folder = _plant(tmp_path / "run", mode=0o777)
    rep = _bound_rep(ctx, folder / "sim.ctl")
    try:
        with pytest.raises(UnsafeRunFolder, match="writable by other users"):
            send_command(f"ipc://{folder}/sim.ctl", "ping", timeout_s=0.5, ctx=ctx)
        assert not rep.poll(200, zmq.POLLIN)  # nothing was sent to it
    finally:
        rep.close()
        ctx.term()


@needs_root
def test_control_request_to_a_socket_of_another_user_is_refused(tmp_path):
    ctx = zmq.Context()
    folder = _plant(tmp_path / "run", mode=0o700)
    rep = _bound_rep(ctx, folder / "sim.ctl")
    try:
        os.chown(folder / "sim.ctl", OTHER_UID, -1)
        with pytest.raises(UnsafeRunFolder, match="not a socket of yours"):
            send_command(f"ipc://{folder}/sim.ctl", "ping", timeout_s=0.5, ctx=ctx)
    finally:
        rep.close()
        ctx.term()


def test_cli_command_refuses_an_open_runs_folder(tmp_path, monkeypatch, caplog):
    root = _plant(tmp_path / "runs", mode=0o777)
    monkeypatch.setenv("IMUFLOW_RUNS", str(root))
    assert cli_main(["command", "sim", "ping"]) == 2
    assert "writable by other users" in caplog.text


def test_run_name_cannot_leave_the_runs_folder(write_graph, runs_dir):
    path = write_graph(GRAPH.format(endpoint="tcp://127.0.0.1:5999", extra="")
                       .replace("version: 1", "version: 1\nname: ../../x"))
    with pytest.raises(ConfigError, match="'name': run name '../../x'"):
        load_graph(path)
    with pytest.raises(ConfigError, match="stays inside the runs folder"):
        create_run_dir("../../x")
    assert cli_main(["run", str(write_graph(GRAPH.format(endpoint="tcp://127.0.0.1:5999",
                                                         extra=""))), "--name", "../x"]) == 2
    made = create_run_dir("ok.name")
    assert made.parent == runs_dir and stat.S_IMODE(made.stat().st_mode) == 0o700


# -- model_dirs: a path or a list of paths ------------------------------------------------------

def test_model_dirs_without_brackets_is_one_folder(write_graph, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    path = write_graph(GRAPH.format(endpoint="tcp://127.0.0.1:5999", extra="")
                       .replace("version: 1", f"version: 1\nmodel_dirs: {models}"))
    graph = load_graph(path)
    assert graph.model_dirs == (models,)
    outside = tmp_path / "elsewhere" / "m.onnx"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    with pytest.raises(ModelRejected, match="outside the model folders"):
        check_inside(outside, graph.model_dirs)


@pytest.mark.parametrize("value", ["5", "[]", "[1, 2]", "{a: b}", "''"])
def test_model_dirs_of_the_wrong_type_is_a_config_error(write_graph, value):
    path = write_graph(GRAPH.format(endpoint="tcp://127.0.0.1:5999", extra="")
                       .replace("version: 1", f"version: 1\nmodel_dirs: {value}"))
    with pytest.raises(ConfigError, match=r"graph.yaml:2: 'model_dirs' must be a folder path"):
        load_graph(path)


def test_path_list_parameter_takes_one_path():
    assert coerce("/abs/models", tuple[Path, ...]) == (Path("/abs/models"),)
    assert coerce("/abs/models", list[Path]) == [Path("/abs/models")]
    with pytest.raises(TypeError):
        coerce("/abs/models", list[str])


# -- loopback tcp: readable by any local user unless it has CURVE keys --------------------------

def test_loopback_endpoint_with_curve_keys_serves_only_authorised_clients(write_graph, tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys, ("server", "client"))
    port = free_port()
    path = write_graph(GRAPH.format(
        endpoint=f"tcp://127.0.0.1:{port}",
        extra=f"    curve: {{secret: {keys}/server.key_secret, authorized: {keys}/authorized}}"))
    sup = Supervisor(load_graph(path))
    sup.start()
    ctx = zmq.Context.instance()
    target = f"tcp://127.0.0.1:{port}"
    good = Subscriber(ctx, [(target, "src/count")],
                      client_keys=ClientKeys(keys / "client.key_secret", keys / "server.key"))
    plain = Subscriber(ctx, [(target, "src/count")])  # any local user, no keys
    try:
        t0 = time.monotonic()
        sup.run(until=lambda: time.monotonic() - t0 > 0.5)
        counts = {name: _received(s, 2.0) for name, s in (("good", good), ("plain", plain))}
    finally:
        good.close()
        plain.close()
        sup.stop()
    assert counts["good"] > 100 and counts["plain"] == 0


def test_loopback_endpoint_without_keys_warns(write_graph, runs_dir):
    import subprocess
    import sys
    path = write_graph(GRAPH.format(endpoint=f"tcp://127.0.0.1:{free_port()}", extra="")
                       .replace("total: 0", "total: 50"))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(path), "--quiet"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    assert proc.returncode == 0, proc.stderr
    assert "has no CURVE keys: any user of this host can connect" in proc.stderr


def test_stale_run_folders_are_removed_at_the_next_start(runs_dir):
    """Left by kill -9 of a supervisor or SIGTERM during start-up: swept, live ones kept."""
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = runs_dir / "old-1"
    stale.mkdir(mode=0o700)
    (stale / "manifest.json").write_text(json.dumps(
        {"name": "old", "config": "/x.yaml", "supervisor_pid": dead.pid, "nodes": []}))
    live = runs_dir / "live-2"
    live.mkdir(mode=0o700)
    (live / "manifest.json").write_text(json.dumps(
        {"name": "live", "config": "/x.yaml", "supervisor_pid": os.getpid(), "nodes": []}))
    starting = runs_dir / "starting-3"
    starting.mkdir(mode=0o700)
    orphan = runs_dir / "orphan-4"
    orphan.mkdir(mode=0o700)
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    made = create_run_dir("new")
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted(
        ["live-2", "starting-3", made.name])
