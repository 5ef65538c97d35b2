"""Node kinds: a dotted import path (``nodes.sync.Sync``) or an alias from entry points.

Other packages add kinds by declaring an entry point in the ``imuflow.kinds``
group, e.g. ``[project.entry-points."imuflow.kinds"] my_filter = "mypkg.filter:MyFilter"``.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.node import Node

ENTRY_POINT_GROUP = "imuflow.kinds"


def aliases() -> dict[str, str]:
    """Registered short names -> ``module:Class`` targets."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


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
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"unknown kind '{kind}': module '{module_name}' not found ({exc})",
                          key="kind") from None
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
