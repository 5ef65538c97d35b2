"""Run functions on the GUI (main) thread on behalf of other threads, with a Future per call."""

from __future__ import annotations

import concurrent.futures
import queue
from collections.abc import Callable
from typing import Any


class GuiCalls:
    """A queue of calls the main thread drains on its timer; callers get a Future of the result."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Queue ``fn`` for the main thread; the Future holds its return value or exception."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    def drain(self) -> int:
        """Run every queued call now (main thread only); return how many ran."""
        ran = 0
        while True:
            try:
                fn, future = self._queue.get_nowait()
            except queue.Empty:
                return ran
            ran += 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the Future
                future.set_exception(exc)

    def cancel_pending(self, reason: str) -> None:
        """Fail every queued call (the main thread is going away)."""
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError(reason))
