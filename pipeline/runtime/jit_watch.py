"""Numba compilations on a node's data path: counted per node, logged, shown in status.

Every numba kernel a node runs on its data must be compiled (or loaded from numba's disk
cache, ``cache=True``) in the node's ``setup``, before the node reports ready: compiling
on the first block stalls the graph for up to seconds (latency p99 in seconds, gaps and a
clock reset in sync on the first run after set-up). This module makes a kernel that a
``setup`` missed visible instead of silent: while a node handles data (``on_block``, a
source's ``poll``) the thread carries the node's :class:`JitCounter`, and numba's event
hooks (``numba:compiler_lock``, ``numba:compile``) count each compilation or disk-cache
load against it. The node loop logs them once and reports ``jit_compiles`` / ``jit_ms``
in the node's status.

Only processes that imported numba before the node reported ready are watched (a node
that imports numba only on its first block is not: import it in ``setup``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


class JitCounter:
    """Numba compilations (or disk-cache loads) while one node handled data.

    Attributes:
        compiles: outermost compilations, each a compile or a load from the disk cache.
        ms: wall time they took, ms.
        kernels: dotted names of the functions numba compiled (cache loads carry no name).
    """

    def __init__(self) -> None:
        self.compiles = 0
        self.ms = 0.0
        self.kernels: set[str] = set()
        self._logged = 0

    def enter(self) -> JitCounter | None:
        """Count this thread's compilations against this counter; returns the previous one."""
        prev = getattr(_local, "counter", None)
        _local.counter = self
        return prev

    @staticmethod
    def leave(prev: JitCounter | None) -> None:
        """Restore the counter :meth:`enter` returned (direct delivery nests nodes)."""
        _local.counter = prev

    def report(self, log: logging.Logger | logging.LoggerAdapter) -> dict[str, float]:
        """Status fields (empty when nothing compiled); logs a warning for new compilations."""
        if not self.compiles:
            return {}
        if self.compiles != self._logged:
            log.warning("numba compiled on the data path: %d time(s), %.0f ms in all (%s); "
                        "its setup should compile this before the node reports ready",
                        self.compiles - self._logged, self.ms,
                        ", ".join(sorted(self.kernels)) or "loaded from numba's disk cache")
            self._logged = self.compiles
        return {"jit_compiles": self.compiles, "jit_ms": round(self.ms, 1)}


def watch() -> JitCounter:
    """A new counter; installs numba's event listener once per process if numba is loaded."""
    global _installed
    if "numba" in sys.modules:
        with _install_lock:
            if not _installed:
                from numba.core import event

                listener = _listener_class(event.Listener)()
                event.register("numba:compiler_lock", listener)
                event.register("numba:compile", listener)
                _installed = True
    return JitCounter()


def _listener_class(base: type) -> type:
    """numba's Listener subclass (built on first use: importing this module loads no numba)."""

    class _Listener(base):  # type: ignore[misc, valid-type]
        def on_start(self, event) -> None:  # noqa: ANN001 - numba.core.event.Event
            counter = getattr(_local, "counter", None)
            if counter is None:
                return
            if event.kind == "numba:compile":
                func = getattr(event.data.get("dispatcher"), "py_func", None)
                if func is not None:
                    counter.kernels.add(f"{func.__module__}.{func.__qualname__}")
                return
            depth = getattr(_local, "depth", 0)
            _local.depth = depth + 1
            if depth == 0:
                _local.t0 = time.perf_counter()

        def on_end(self, event) -> None:  # noqa: ANN001
            counter = getattr(_local, "counter", None)
            if counter is None or event.kind != "numba:compiler_lock":
                return
            depth = getattr(_local, "depth", 0) - 1
            _local.depth = max(depth, 0)
            if depth == 0:
                counter.compiles += 1
                counter.ms += (time.perf_counter() - _local.t0) * 1e3

    return _Listener
