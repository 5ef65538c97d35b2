"""Observer commands (swap, reset) sent from a background thread so the GUI never blocks."""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path
from typing import Any

from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.node_loop import ctl_endpoint

log = logging.getLogger("imuflow.view.command_client")

SWAP_TIMEOUT_S = 30.0


class ObserverClient:
    """Sends control commands to one node of the run; every call returns a Future of the reply."""

    def __init__(self, run_dir: Path | None, node_id: str) -> None:
        self.node_id = node_id
        self.endpoint = ctl_endpoint(run_dir, node_id) if run_dir is not None else None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="viewer-cmd")

    def submit(self, cmd: str, args: dict | None = None,
               timeout_s: float = SWAP_TIMEOUT_S) -> concurrent.futures.Future:
        """Send ``cmd`` off the calling thread; the Future yields the reply dict (never raises)."""
        return self._pool.submit(self._send, cmd, args or {}, timeout_s)

    def _send(self, cmd: str, args: dict, timeout_s: float) -> dict[str, Any]:
        if self.endpoint is None:
            return {"ok": False, "error": "not running in a graph: no observer to talk to"}
        try:
            reply = send_command(self.endpoint, cmd, args, timeout_s=timeout_s)
        except ControlTimeout as exc:
            reply = {"ok": False, "error": f"{exc} (is node '{self.node_id}' in the graph?)"}
        log.info("%s %s -> %s", self.node_id, cmd, reply)
        return reply

    def swap(self, model: Path) -> concurrent.futures.Future:
        """Ask the observer to hot-swap to ``model`` (an .onnx path)."""
        return self.submit("swap", {"model": str(model)})

    def reset(self) -> concurrent.futures.Future:
        """Ask the observer to reset its recurrent state."""
        return self.submit("reset", timeout_s=5.0)

    def close(self) -> None:
        """Stop the sender thread (pending commands are abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
