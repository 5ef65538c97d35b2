"""``imuflow command NODE CMD [KEY=VALUE ...]``: send a control command to a running node."""

from __future__ import annotations

import argparse
import json

from pipeline.cli.node_command import command_node


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("node", help="node id, as in the graph config")
    p.add_argument("cmd", help="command name, e.g. ping, stats, reset, swap")
    p.add_argument("args", nargs="*", help="KEY=VALUE arguments (values parsed as JSON if they can be)")
    p.add_argument("--run", help="run name (default: your only running graph; required when "
                                 "more than one runs)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")


def parse_kv(items: list[str]) -> dict:
    """Turn ``KEY=VALUE`` strings into a dict, JSON-decoding values where possible."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"argument '{item}' must be KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Send the command and print the JSON reply; exit 1 when the reply is not ok."""
    reply = command_node(args.run, args.node, args.cmd, parse_kv(args.args),
                         timeout_s=args.timeout)
    print(json.dumps(reply, indent=1))
    return 0 if reply.get("ok") else 1
