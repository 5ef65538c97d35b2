"""``imuflow nodes``: registered node kinds with their ports and parameters.

Each parameter shows its type, default, and its meaning and unit from the comment on its
field in the node's ``Params`` dataclass (:mod:`pipeline.runtime.param_notes`).
"""

from __future__ import annotations

import argparse

from pipeline.runtime.errors import ConfigError
from pipeline.runtime.param_notes import param_notes
from pipeline.runtime.params import describe
from pipeline.runtime.registry import aliases, kind_name, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("kind", nargs="?", help="show only this kind (alias or dotted path)")


def run(args: argparse.Namespace) -> int:
    """Print each kind: alias, dotted path, docstring line, ports and parameters (meaning, unit)."""
    kinds = {args.kind: args.kind} if args.kind else aliases()
    for alias in sorted(kinds):
        try:
            cls = resolve(alias)
        except ConfigError as exc:
            print(f"{alias}: cannot load: {exc}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{alias}  ({kind_name(cls)})")
        if doc:
            print(f"    {doc[0]}")
        for port, decl in cls.inputs.items():
            print(f"    in  {port}: accepts {', '.join(decl.accepts)}"
                  f"{' (many)' if decl.many else ''}, {decl.policy.value}")
        for topic in cls.outputs:
            print(f"    out {topic}")
        notes = param_notes(cls.Params)
        for name, typ, default in describe(cls.Params):
            note = notes.get(name)
            print(f"    param {name}: {typ} = {default}" + (f"  # {note}" if note else ""))
        print()
    return 0
