"""The command line's own behaviour: help, version, refusing to replace keys, --quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_quiet_run_prints_only_warnings(tmp_path):
    """The default graph headless for a few seconds: --quiet leaves no INFO records, no status."""
    loud = _imuflow("run", "--duration", "6")
    quiet = _imuflow("run", "--duration", "6", "--quiet")
    assert loud.returncode == 0 and quiet.returncode == 0, quiet.stderr[-2000:]
    assert " INFO " in loud.stderr  # the check below can fail
    assert " INFO " not in quiet.stderr, quiet.stderr[-2000:]
    assert "latency" not in quiet.stderr + quiet.stdout
