"""Run folders: where a running graph keeps its sockets and manifest, so CLIs can find it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


def runs_root() -> Path:
    """Folder holding one sub-folder per running graph (``$IMUFLOW_RUNS`` overrides)."""
    root = os.environ.get("IMUFLOW_RUNS") or os.path.join(tempfile.gettempdir(),
                                                           f"imuflow-{os.getuid()}")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass(frozen=True)
class RunInfo:
    """A run as described by its manifest."""

    name: str
    path: Path
    config: str
    supervisor_pid: int
    nodes: list[str]

    @property
    def alive(self) -> bool:
        """True while the supervisor process exists."""
        try:
            os.kill(self.supervisor_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def create_run_dir(name: str) -> Path:
    """Make a fresh run folder ``<root>/<name>-<pid>`` (short: ipc paths are length-limited)."""
    path = runs_root() / f"{name}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700)
    return path


def write_manifest(path: Path, *, name: str, config: Path, nodes: list[str]) -> None:
    """Write ``manifest.json`` describing the run."""
    data = {"name": name, "config": str(config.resolve()), "supervisor_pid": os.getpid(),
            "nodes": nodes}
    tmp = path / "manifest.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path / "manifest.json")


def read_manifest(path: Path) -> RunInfo:
    """Read a run folder's manifest."""
    d = json.loads((path / "manifest.json").read_text())
    return RunInfo(name=d["name"], path=path, config=d["config"],
                   supervisor_pid=d["supervisor_pid"], nodes=d["nodes"])


def live_runs() -> list[RunInfo]:
    """Runs whose supervisor is alive, newest first."""
    runs = []
    for sub in runs_root().iterdir():
        if (sub / "manifest.json").exists():
            try:
                info = read_manifest(sub)
            except (ValueError, KeyError, OSError):
                continue
            if info.alive:
                runs.append(info)
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)


def find_run(name: str | None) -> RunInfo:
    """The live run called ``name`` (or the only/newest one when name is None)."""
    runs = live_runs()
    if name:
        runs = [r for r in runs if r.name == name or r.path.name == name]
    if not runs:
        raise LookupError(f"no running imuflow graph{' named ' + repr(name) if name else ''} "
                          f"(looked in {runs_root()}); start one with `imuflow run CONFIG`")
    return runs[0]
