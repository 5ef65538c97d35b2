"""``imuflow swap NODE MODEL [--run NAME]``: hot-swap the model of a running observer node.

The node loads and checks MODEL (an .onnx file or its card) off the hot path,
warms it on the last seconds of input and switches between two messages. The
reply (printed as JSON) says what happened: ok, old and new model names, load,
check and warm-up times in ms, frames used for warm-up; or ok false and the
reason, in which case the running model keeps running. Exit status 0 on ok, 1 if
refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.cli.node_command import command_node


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("node", help="observer node id, as in the graph config")
    p.add_argument("model", help="model .onnx file or its card .json (inside the graph's "
                                 "model_dirs; a bare name is looked up there)")
    p.add_argument("--run", help="run name (default: your only running graph; required when "
                                 "more than one runs)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the reply")


def model_argument(model: str) -> str:
    """An existing local path made absolute (the node may run elsewhere); else as given."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


def run(args: argparse.Namespace) -> int:
    """Send ``swap`` and print the node's JSON reply."""
    reply = command_node(args.run, args.node, "swap", {"model": model_argument(args.model)},
                         timeout_s=args.timeout)
    print(json.dumps(reply, indent=1))
    return 0 if reply.get("ok") else 1
