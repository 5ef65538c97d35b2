"""Control requests: the schema a request must fit before any node or the supervisor sees it.

A request is one ZeroMQ frame of UTF-8 JSON, at most ``MAX_REQUEST_BYTES``:
``{"cmd": NAME, "args": {KEY: VALUE, ...}}`` where ``NAME`` is a command name
(letters, digits, ``_``, ``-``, at most 64), ``args`` is optional, a mapping with
string keys; the whole request nested at most ``MAX_DEPTH`` levels. Anything else gets an error
reply (``{"ok": false, "error": ...}``) and is never dispatched: no malformed
request can take a node or the supervisor down.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.runtime.errors import ImuflowError

MAX_REQUEST_BYTES = 1 << 20
MAX_DEPTH = 16
_CMD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_KEYS = {"cmd", "args"}


class BadRequest(ImuflowError):
    """A control request that does not fit the schema; the message says what is wrong."""


def parse_request(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """Check one request's frames against the schema; return ``(cmd, args)`` or raise BadRequest."""
    if len(frames) != 1:
        raise BadRequest(f"a request is one frame of JSON, got {len(frames)} frames")
    raw = frames[0]
    if len(raw) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request of {len(raw)} bytes is over the {MAX_REQUEST_BYTES} byte limit")
    _check_nesting(raw)
    try:
        request = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(request, dict):
        raise BadRequest(f"a request is a JSON object {{\"cmd\": ..., \"args\": {{...}}}}, "
                         f"got {type(request).__name__}")
    unknown = set(request) - _KEYS
    if unknown:
        raise BadRequest(f"unknown request keys {sorted(unknown)}; allowed: cmd, args")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not _CMD.fullmatch(cmd):
        raise BadRequest(f"'cmd' must be a command name (letters, digits, '_'), got {cmd!r:.80}")
    args = request.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"'args' of '{cmd}' must be a JSON object of KEY: VALUE, "
                         f"got {type(args).__name__}")
    return cmd, args


def reply_bytes(reply: Any) -> bytes:
    """Encode a reply as JSON; one that cannot be encoded becomes an error reply naming why."""
    try:
        return json.dumps(reply, allow_nan=True).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        node = reply.get("node") if isinstance(reply, dict) else None
        return json.dumps({"ok": False, "node": node,
                           "error": f"reply could not be encoded as JSON: {exc}"}).encode()


def _check_nesting(raw: bytes) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH before parsing it (no RecursionError)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise BadRequest(f"request nested deeper than {MAX_DEPTH} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON: refuse them in requests."""
    raise ValueError(f"{name} is not a JSON value")

