"""Run folders: where a running graph keeps its sockets and manifest, so CLIs can find it.

The folders are the only protection of the control and data sockets from other
local users (see docs/runtime.md, "Security model"): the runs folder is
``$IMUFLOW_RUNS``, else ``$XDG_RUNTIME_DIR/imuflow``, else ``<tmp>/imuflow-<uid>``,
and it, each run folder and each socket a client talks to must belong to the
current user and be writable by nobody else, or imuflow refuses to use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.runtime.errors import ConfigError, UnsafeRunFolder

RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def check_private(path: Path, what: str = "runs folder", *, follow: bool = True) -> None:
    """Raise UnsafeRunFolder unless ``path`` is a directory owned by us, not group/other-writable.

    ``follow=False`` also refuses a symbolic link (for folders in a shared directory such as /tmp).
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise UnsafeRunFolder(f"{what} {path} does not exist") from None
    fix = ("; remove it (or set IMUFLOW_RUNS to a folder of your own, mode 700) and "
           "start again")
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRunFolder(f"{what} {path} is a symbolic link, refusing to use it{fix}")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRunFolder(f"{what} {path} is not a folder{fix}")
    if st.st_uid != os.getuid():
        raise UnsafeRunFolder(f"{what} {path} belongs to uid {st.st_uid}, not to you "
                              f"(uid {os.getuid()}): another user may have planted it{fix}")
    if st.st_mode & 0o022:
        raise UnsafeRunFolder(f"{what} {path} is writable by other users "
                              f"(mode {stat.S_IMODE(st.st_mode):03o}){fix}")


def check_socket(endpoint: str) -> None:
    """Raise UnsafeRunFolder unless an ``ipc://`` endpoint's socket and folder are private to us.

    Other endpoints (inproc, tcp) are not checked here.
    """
    if not endpoint.startswith("ipc://"):
        return
    sock = Path(endpoint[len("ipc://"):])
    check_private(sock.parent, "run folder")
    try:
        st = os.lstat(sock)
    except FileNotFoundError:
        return  # nothing listens: the caller's connect times out with its own message
    if st.st_uid != os.getuid() or not stat.S_ISSOCK(st.st_mode):
        raise UnsafeRunFolder(f"control socket {sock} is not a socket of yours "
                              f"(uid {st.st_uid}); refusing to talk to it")


def _default_root() -> tuple[Path, bool]:
    """The default runs folder and whether it lives in a shared directory (tmp)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        try:
            check_private(Path(runtime), "XDG_RUNTIME_DIR")
            return Path(runtime) / "imuflow", False
        except Exception:  # noqa: BLE001 - an unusable runtime dir falls back to tmp
            pass
    return Path(tempfile.gettempdir()) / f"imuflow-{os.getuid()}", True


def runs_root() -> Path:
    """Folder holding one sub-folder per running graph, created private and checked.

    ``$IMUFLOW_RUNS`` overrides the default; raises UnsafeRunFolder when the folder
    belongs to another user or others may write to it.
    """
    override = os.environ.get("IMUFLOW_RUNS")
    path, shared = (Path(override), False) if override else _default_root()
    if shared:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    else:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private(path, follow=not shared)
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


def check_run_name(name: str) -> str:
    """Return ``name`` if it is a plain run name (letters, digits, ``_.-``); else raise ValueError."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"run name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                         "(no '/' or '..': the run folder stays inside the runs folder)")
    return name


def create_run_dir(name: str) -> Path:
    """Make a fresh private run folder ``<root>/<name>-<pid>`` (short: ipc paths are length-limited)."""
    try:
        check_run_name(name)
    except ValueError as exc:
        raise ConfigError(str(exc), key="name") from None
    root = runs_root()
    remove_stale_runs(root)
    path = root / f"{name}-{os.getpid()}"
    if path.is_symlink() or path.exists():
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    path.mkdir(mode=0o700)
    check_private(path, "run folder", follow=False)
    return path


STALE_WITHOUT_MANIFEST_S = 600.0  # a run folder gets its manifest at once; older ones died


def remove_stale_runs(root: Path) -> list[Path]:
    """Remove run folders of ours left by a supervisor that died (kill -9, SIGTERM at start-up).

    A folder goes when its manifest names a process that no longer exists, or when it
    has no manifest and is older than STALE_WITHOUT_MANIFEST_S. Returns what was removed.
    """
    removed = []
    now = time.time()
    for sub in root.iterdir():
        try:
            st = sub.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            manifest = sub / "manifest.json"
            if manifest.exists():
                stale = not read_manifest(sub).alive
            else:
                stale = now - st.st_mtime > STALE_WITHOUT_MANIFEST_S
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or removed by its own run: leave it
        if stale:
            shutil.rmtree(sub, ignore_errors=True)
            removed.append(sub)
    return removed


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
                check_private(sub, "run folder", follow=False)
                info = read_manifest(sub)
            except (ValueError, KeyError, TypeError, OSError, UnsafeRunFolder):
                continue
            if info.alive:
                runs.append(info)
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)


def describe_runs(runs: list[RunInfo]) -> str:
    """One line naming each run, its graph file and its nodes (for messages); "none"."""
    if not runs:
        return "none"
    return "; ".join(f"'{r.name}' ({Path(r.config).name}: {', '.join(r.nodes)})" for r in runs)


def find_run(name: str | None) -> RunInfo:
    """The live run called ``name``; without a name, the only run of the user's.

    Run folders are the current user's by construction (``live_runs`` skips any other
    owner's), so with no name a run is chosen only when it is the only one; with two or
    more LookupError lists them and asks for ``--run``, so a command never goes to a graph
    the user did not mean.
    """
    runs = [r for r in live_runs() if r.path.lstat().st_uid == os.getuid()]
    if name:
        found = [r for r in runs if r.name == name or r.path.name == name]
        if not found:
            raise LookupError(f"no running imuflow graph named {name!r} (looked in "
                              f"{runs_root()}); running now: {describe_runs(runs)}")
        if len(found) > 1:
            raise LookupError(f"{len(found)} running graphs are named {name!r}: "
                              f"{', '.join(r.path.name for r in found)}; pass --run with one "
                              "of these folder names")
        return found[0]
    if not runs:
        raise LookupError(f"no running imuflow graph (looked in {runs_root()}); start one "
                          "with `imuflow run CONFIG`")
    if len(runs) > 1:
        raise LookupError(f"{len(runs)} graphs are running: {describe_runs(runs)}; pass --run "
                          "NAME to say which")
    return runs[0]
