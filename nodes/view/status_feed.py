"""The supervisor's status feed (``supervisor/status``) and the one-line summary the viewer shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq

from pipeline.runtime.bus import Subscriber

STATUS_TOPIC = "supervisor/status"


def supervisor_pub_endpoint(run_dir: Path) -> str:
    """Endpoint where a run's supervisor publishes its status once a second."""
    return f"ipc://{run_dir}/supervisor.pub"


class StatusFeed:
    """Non-blocking reader of the supervisor status; poll it from one thread only.

    ``latest`` is the newest snapshot: ``{"graph", "run_dir", "nodes": {id: {rate_in_hz,
    rate_out_hz, latency_ms_p99, gaps, restarts, state, ...node extras such as "model"}}}``.
    """

    def __init__(self, run_dir: Path | None) -> None:
        self.latest: dict[str, Any] = {}
        self._ctx: zmq.Context | None = None
        self._sub: Subscriber | None = None
        if run_dir is not None:
            self._ctx = zmq.Context()
            self._sub = Subscriber(self._ctx, [(supervisor_pub_endpoint(run_dir), STATUS_TOPIC)])

    def poll(self) -> bool:
        """Read every waiting snapshot, keep the newest; True if one arrived."""
        if self._sub is None:
            return False
        got = False
        for blk in self._sub.drain(100):
            if isinstance(blk.data, dict):
                self.latest = blk.data
                got = True
        return got

    def close(self) -> None:
        """Close the socket and its context."""
        if self._sub is not None:
            self._sub.close()
            self._ctx.term()
            self._sub = None


def _rate(st: dict) -> float:
    return float(st.get("rate_out_hz") or st.get("rate_in_hz") or 0.0)


def format_status(snapshot: dict[str, Any], observer: str, *, latency_ms_p99: float | None = None,
                  viewer_fps: float | None = None) -> str:
    """One line: per-node rates (Hz), gaps, restarts, the observer's model, end-to-end p99 latency (ms)."""
    nodes = snapshot.get("nodes") or {}
    parts = []
    for nid, st in nodes.items():
        text = f"{nid} {_rate(st):.0f} Hz"
        if st.get("gaps"):
            text += f" gaps {st['gaps']}"
        if st.get("restarts"):
            text += f" restarts {st['restarts']}"
        if st.get("state") not in (None, "running"):
            text += f" ({st.get('state')})"
        parts.append(text)
    line = " | ".join(parts) if parts else "no supervisor status yet"
    model = running_model(snapshot, observer)
    if model:
        line += f" | model {model}"
    if latency_ms_p99 is not None:
        line += f" | end-to-end p99 {latency_ms_p99:.1f} ms"
    if viewer_fps is not None:
        line += f" | view {viewer_fps:.0f} fps"
    return line


def running_model(snapshot: dict[str, Any], observer: str) -> str:
    """The model the observer reports in its status extras ("" if unknown)."""
    st = (snapshot.get("nodes") or {}).get(observer) or {}
    model = st.get("model")
    return Path(str(model)).name if model else ""
