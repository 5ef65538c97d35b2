"""Control channel client: send a JSON command to a node's control socket, get its reply."""

from __future__ import annotations

from typing import Any

import zmq

from pipeline.runtime.errors import ImuflowError
from pipeline.runtime.run_dir import check_socket


class ControlTimeout(ImuflowError):
    """A node did not answer a control command in time."""


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
        return sock.recv_json()
    finally:
        sock.close()
