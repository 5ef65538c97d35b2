"""The command line's own behaviour: help, version, refusing to replace keys, --quiet."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main, plain

REPO = Path(__file__).resolve().parents[1]


def _imuflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


def test_bare_imuflow_prints_the_command_list(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: imuflow" in out
    for command in ("run", "record", "track", "calibrate", "eval"):
        assert f"    {command} " in out


def test_version_names_package_and_python():
    proc = _imuflow("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("imuflow ") and "Python 3." in proc.stdout


def test_help_texts_carry_no_markup():
    assert plain("``imuflow run``: see :func:`~x.y` and `z`") == "imuflow run: see x.y and z"
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "``" not in text and ":func:" not in text, name


def test_keys_refuses_to_replace_existing_keys(tmp_path):
    assert main(["keys", str(tmp_path), "server"]) == 0
    secret = (tmp_path / "server.key_secret").read_bytes()
    assert main(["keys", str(tmp_path), "server"]) == 1
    assert (tmp_path / "server.key_secret").read_bytes() == secret
    assert main(["keys", str(tmp_path), "server", "--force"]) == 0
    assert (tmp_path / "server.key_secret").read_bytes() != secret


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory) -> dict:
    """The default graph without a display, as a user types it: `imuflow run` (stopped with
    Ctrl-C once the commands below answered) and at the same time `imuflow run --duration 5
    --quiet`; while the first runs: `status --once`, `status --list`, `command` and `keys`
    as subprocesses. Their exit codes, output and times, for the tests below."""
    tmp = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, PYTHONPATH=str(REPO), IMUFLOW_RUNS=str(tmp / "runs"))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, *args: str) -> None:  # output to files: nothing blocks on a pipe
        with open(tmp / f"{name}.out", "w") as o, open(tmp / f"{name}.err", "w") as e:
            procs[name] = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO,
                                           env=env, stdout=o, stderr=e)

    start("loud", "run", "--name", "loud")
    start("quiet", "run", "--duration", f"{QUIET_S:g}", "--quiet", "--name", "quiet")
    start("keys", "keys", str(tmp / "keys"), "server")
    out: dict = {"keys_dir": tmp / "keys"}
    ended: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 180
        while "loud" not in out or "quiet" not in out:  # until both graphs run
            assert time.monotonic() < deadline, "never running"
            for name in ("loud", "quiet"):  # each must be seen running before it ends
                assert name in out or procs[name].poll() is None, f"{name} ended early"
            for name in ("loud", "quiet"):
                folder = next((p for p in (tmp / "runs").glob(f"{name}-*")), None)
                if name not in out and folder and _all_running(folder):
                    out[name] = {"running_at": time.monotonic(), "folder": folder}
            time.sleep(0.1)
        start("status", "status", "--once", "--run", "loud")
        start("list", "status", "--list")
        start("ping", "command", "observer", "ping", "--run", "loud")
        while len(ended) < len(procs):
            assert time.monotonic() < deadline, f"still running: {set(procs) - set(ended)}"
            for name, proc in procs.items():
                if name not in ended and proc.poll() is not None:
                    ended[name] = time.monotonic()
            if "loud" not in ended and "interrupted_at" not in out[
                    "loud"] and all(n in ended for n in ("status", "list", "ping")):
                procs["loud"].send_signal(signal.SIGINT)  # Ctrl-C
                out["loud"]["interrupted_at"] = time.monotonic()
            time.sleep(0.05)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for name, proc in procs.items():
        out.setdefault(name, {}).update(
            rc=proc.returncode, ended_at=ended.get(name), stdout=(tmp / f"{name}.out").read_text(),
            stderr=(tmp / f"{name}.err").read_text())
    return out


def _all_running(folder: Path) -> bool:
    from pipeline.runtime.control import ControlTimeout, send_command
    from pipeline.runtime.supervisor import supervisor_ctl_endpoint
    try:
        nodes = send_command(supervisor_ctl_endpoint(folder), "status",
                             timeout_s=1)["status"]["nodes"]
    except (ControlTimeout, OSError):
        return False
    return bool(nodes) and all(n.get("state") == "running" for n in nodes.values())


QUIET_S = 5.0  # runs beside the other, which waits for the commands: costs no time
DEFAULT_NODES = ["sim", "sync", "filter", "orientation", "observer", "fk", "viewer"]
STATUS_LINE = re.compile(r"^sim \d+/s > sync \d+/s > .* > viewer \d+/s"
                         r" \| latency p99 [\d.]+ ms \| gaps \d+$")


def test_default_run_is_headless_with_a_status_line_and_stops_on_ctrl_c(default_runs):
    """README: `imuflow run` without a display runs headless, with a status line; Ctrl-C
    stops it (exit 0) and the run folder is removed at stop."""
    run = default_runs["loud"]
    assert run["rc"] == 0, run["stderr"][-3000:]
    assert "running headless: no display" in run["stderr"]
    lines = [ln for ln in run["stderr"].splitlines() if STATUS_LINE.match(ln)]
    assert len(lines) >= 2, run["stderr"][-3000:]  # one a second while it runs
    assert any(" > observer 9" in ln or " > observer 10" in ln for ln in lines)  # ~100/s
    # stopped within 2 s (the supervisor's deadline), with a 3x margin for a loaded machine
    assert run["ended_at"] - run["interrupted_at"] < 3 * 2.0
    assert not run["folder"].exists()


def test_run_duration_ends_the_run_by_itself(default_runs):
    run = default_runs["quiet"]
    assert run["rc"] == 0, run["stderr"][-3000:]
    ran = run["ended_at"] - run["running_at"]
    # not before the duration (less the time it took to see it running); the stop then takes
    # < 2 s, with a 3x margin for a loaded machine
    assert QUIET_S - 1.5 < ran < QUIET_S + 3 * 2.0, ran
    assert not run["folder"].exists()


def test_status_command_prints_every_node_of_the_running_graph(default_runs):
    run = default_runs["status"]
    assert run["rc"] == 0, run["stderr"]
    header, *rows = run["stdout"].splitlines()
    assert header.startswith("graph 'loud' (") and str(default_runs["loud"]["folder"]) in header
    table = {r.split()[0]: r.split() for r in rows[1:]}
    assert rows[0].split()[:3] == ["node", "state", "in/s"]
    assert sorted(table) == sorted(DEFAULT_NODES)
    assert all(cols[1] == "running" for cols in table.values()), run["stdout"]
    listing = default_runs["list"]
    assert listing["rc"] == 0, listing["stderr"]
    rows = [line.split("\t") for line in listing["stdout"].splitlines()]
    assert [r[0] for r in rows if r[0] == "loud"] == ["loud"]
    assert {r[0] for r in rows} <= {"loud", "quiet"}
    loud = next(r for r in rows if r[0] == "loud")
    assert loud[2].endswith("configs/default.yaml") and loud[3] == str(
        default_runs["loud"]["folder"])


def test_command_reaches_a_node_of_the_running_graph(default_runs):
    run = default_runs["ping"]
    assert run["rc"] == 0, run["stderr"]
    reply = json.loads(run["stdout"])
    assert reply["ok"] is True and reply["node"] == "observer" and reply["pid"] > 0


def test_keys_command_writes_a_key_pair(default_runs):
    run = default_runs["keys"]
    assert run["rc"] == 0, run["stderr"]
    folder = default_runs["keys_dir"]
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert (folder / "server.key_secret").stat().st_mode & 0o777 == 0o600
    public = (folder / "server.key").read_text()
    secret = (folder / "server.key_secret").read_text()
    assert "public-key" in public and "secret-key" in secret and "secret-key" not in public


def test_quiet_run_prints_only_warnings(default_runs):
    """--quiet leaves no INFO records and no status line (the default graph headless)."""
    loud, quiet = default_runs["loud"], default_runs["quiet"]
    assert quiet["rc"] == 0, quiet["stderr"][-2000:]
    assert " INFO " in loud["stderr"]  # the check below can fail
    assert " INFO " not in quiet["stderr"], quiet["stderr"][-2000:]
    assert "latency" not in quiet["stdout"] + quiet["stderr"]


def test_run_with_calibration_sets_filter_and_observer(tmp_path):
    """`imuflow run CONFIG --calibration CAL`: the filter applies CAL, the observer takes its
    joint centres, the config file is left as it was and the derived one is removed; a
    missing file, or a graph without a filter, is refused before anything starts."""
    from pipeline.calibration import calibrate, write_calibration
    from pipeline.kinematics.calibration_motion import simulated_procedure
    from pipeline.kinematics.chain import load_chain

    knee = load_chain(REPO / "configs/chains/knee.yaml")
    acc, gyr = simulated_procedure(knee, 3, 100.0)
    cal = write_calibration(calibrate(knee, acc, gyr, 100.0), tmp_path / "cal.yaml")
    before = sorted(p.name for p in (REPO / "configs").iterdir())
    proc = _imuflow("run", "configs/default.yaml", "--calibration", str(cal), "--duration", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"[filter] calibration {cal} applied to ['shank', 'thigh']" in proc.stderr
    assert f"[observer] joint 'shank': lever arms from {cal}" in proc.stderr
    assert sorted(p.name for p in (REPO / "configs").iterdir()) == before
    proc = _imuflow("run", "configs/default.yaml", "--calibration", str(tmp_path / "no.yaml"))
    assert proc.returncode == 2 and "no.yaml: no such file" in proc.stderr
    proc = _imuflow("run", "configs/sim_truth.yaml", "--calibration", str(cal))
    assert proc.returncode == 2 and "has no filter node" in proc.stderr
