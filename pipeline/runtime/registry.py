"""Node kinds: a dotted import path (``nodes.sync.Sync``) or an alias from entry points.

Other packages add kinds by declaring an entry point in the ``imuflow.kinds``
group, e.g. ``[project.entry-points."imuflow.kinds"] my_filter = "mypkg.filter:MyFilter"``.

Only modules of known packages are ever imported for a ``kind`` (a config is
data; naming a module must not run it): imuflow's own (``nodes``, ``drivers``,
``pipeline``), the packages of ``imuflow.kinds`` entry points, and those listed
in ``$IMUFLOW_KIND_PACKAGES`` (comma-separated top-level package names).
"""

from __future__ import annotations

import difflib
import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.node import Node

ENTRY_POINT_GROUP = "imuflow.kinds"


def aliases() -> dict[str, str]:
    """Registered short names -> ``module:Class`` targets."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


PROJECT_PACKAGES = ("nodes", "drivers", "pipeline")


def kind_packages() -> set[str]:
    """Top-level packages whose modules may be imported for a ``kind``."""
    extra = os.environ.get("IMUFLOW_KIND_PACKAGES", "")
    eps = {ep.value.split(":", 1)[0].split(".", 1)[0]
           for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return set(PROJECT_PACKAGES) | eps | {p.strip() for p in extra.split(",") if p.strip()}


def resolve(kind: str) -> type[Node]:
    """Import the node class named by ``kind``; raise ConfigError with a hint if impossible."""
    known = aliases()
    target = known.get(kind)
    if target is not None:
        module_name, _, attr = target.partition(":")
    elif "." in kind:
        module_name, _, attr = kind.rpartition(".")
    else:
        near = difflib.get_close_matches(kind, list(known), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else (
            "; use a dotted path such as nodes.sync.Sync, or see `imuflow nodes`")
        raise ConfigError(f"unknown kind '{kind}'{hint}", key="kind")
    allowed = kind_packages()
    if module_name.split(".", 1)[0] not in allowed:
        raise ConfigError(f"kind '{kind}': module '{module_name}' is not in a known package "
                          f"({', '.join(sorted(allowed))}); register the class as an "
                          "'imuflow.kinds' entry point or add its package to "
                          "IMUFLOW_KIND_PACKAGES", key="kind")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"unknown kind '{kind}': module '{module_name}' not found ({exc})",
                          key="kind") from None
    except SyntaxError as exc:
        raise ConfigError(f"kind '{kind}': module '{module_name}' has a syntax error at "
                          f"{exc.filename}:{exc.lineno}: {exc.msg}", key="kind") from None
    except Exception as exc:  # noqa: BLE001 - any import failure is the kind's problem
        raise ConfigError(f"kind '{kind}': importing module '{module_name}' failed: "
                          f"{type(exc).__name__}: {exc}", key="kind") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"unknown kind '{kind}': module '{module_name}' has no '{attr}'",
                          key="kind")
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise ConfigError(f"kind '{kind}' is not a node class (a subclass of pipeline.Node)",
                          key="kind")
    return cls


def plugin(group: str, name: str) -> Any:
    """The object an ``imuflow.*`` entry point names; ImuflowError naming the fix if missing."""
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    raise ImuflowError(f"no entry point '{name}' in group '{group}': the imuflow package is not "
                       "installed; run `bash tools/setup.sh` (pip install -e .)")


def kind_name(cls: type) -> str:
    """Dotted path of a node class, as written in a config."""
    return f"{cls.__module__}.{cls.__qualname__}"
