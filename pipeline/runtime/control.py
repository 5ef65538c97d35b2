"""Control channel client: send a JSON command to a node's control socket, get its reply."""

from __future__ import annotations

import json
from typing import Any

import zmq

from pipeline.runtime.errors import ImuflowError
from pipeline.runtime.run_dir import check_socket


class ControlTimeout(ImuflowError):
    """A node did not answer a control command in time."""


class ControlReplyError(ImuflowError):
    """A control socket answered with something that is not a JSON object."""


def send_command(endpoint: str, cmd: str, args: dict | None = None, *, timeout_s: float = 5.0,
                 ctx: zmq.Context | None = None) -> dict[str, Any]:
    """Send ``{"cmd", "args"}`` to ``endpoint`` and return the node's JSON reply.

    An ``ipc://`` endpoint must be a socket of the current user in a private folder
    (UnsafeRunFolder otherwise): a reply from another user's socket is never trusted.
    """
    check_socket(endpoint)
    ctx = ctx or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_json({"cmd": cmd, "args": args or {}})
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise ControlTimeout(f"no reply to '{cmd}' from {endpoint} within {timeout_s:g} s")
        raw = sock.recv()
    finally:
        sock.close()
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, not UTF-8, nested too deep
        reply = None
    if not isinstance(reply, dict):
        raise ControlReplyError(f"the reply to '{cmd}' from {endpoint} is not a JSON object "
                                f"({len(raw)} bytes: {raw[:60]!r}); is it an imuflow node?")
    return reply
