"""BLE plumbing shared by the bleak drivers: one asyncio loop thread, and a self-healing device link.

A node owns one :class:`BleLoop` (an event loop in a daemon thread). Each
sensor is a :class:`BleLink` running on it: find the device by address,
connect (one connect at a time: concurrent connects upset BlueZ), let the
device profile start streaming, then wait; when the link drops, reconnect
with exponential backoff until the node stops. Everything the link hears is
put on a thread-safe queue as :class:`LinkEvent`, stamped with the host
receive time, for the node's ``poll`` to drain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, Protocol

from drivers.ble.bluetooth_service import service_problem
from pipeline.runtime.errors import ConfigError, DeviceTimeout

_log = logging.getLogger("imuflow.ble_connection")

RECONNECT_START_S = 0.5
EventKind = Literal["data", "battery", "connected", "disconnected", "failed"]
Notify = Callable[[str, "bytes | bytearray"], None]  # (event kind, payload) from a notification


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something a BLE link heard: `t_host_ns` is time.monotonic_ns() in the callback."""

    sensor: str
    kind: EventKind
    t_host_ns: int
    data: bytes = b""
    source: str = ""  # for "data": which characteristic/stream, profile-defined


class DeviceProfile(Protocol):
    """What a device needs after connecting and before disconnecting."""

    async def start(self, client: Any, notify: Notify) -> None:
        """Configure the device, enable notifications (calling ``notify``), start streaming."""

    async def stop(self, client: Any) -> None:
        """Stop streaming and disable notifications (before the link disconnects)."""


def load_backend(dotted: str) -> ModuleType:
    """Import a module with bleak's ``BleakClient``/``BleakScanner`` (``bleak`` or a test fake)."""
    try:
        module = importlib.import_module(dotted)
    except ImportError as exc:
        raise ConfigError(f"BLE backend '{dotted}' cannot be imported ({exc}); use 'bleak' "
                          "(pip install bleak) or a module with the same API", key="backend") from None
    for name in ("BleakClient", "BleakScanner"):
        if not hasattr(module, name):
            raise ConfigError(f"BLE backend '{dotted}' has no {name}", key="backend")
    return module


def backend_errors(backend: ModuleType) -> tuple[type[BaseException], ...]:
    """Exceptions a link treats as 'device unreachable, retry later'."""
    errors: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, OSError, EOFError,
                                         DeviceTimeout]
    base = getattr(backend, "BleakError", None)
    if base is None:
        exc_mod = getattr(backend, "exc", None)
        base = getattr(exc_mod, "BleakError", None)
    if isinstance(base, type):
        errors.append(base)
    return tuple(errors)


class BleLoop:
    """An asyncio event loop running in a daemon thread, owned by one node."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"{name}-ble", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, timeout_s: float = 1.0) -> None:
        """Cancel what is still running, stop the loop and join its thread."""
        if not self.loop.is_running():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=timeout_s) if tasks else None

        try:
            self.submit(cancel_all()).result(timeout_s + 0.5)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError) as exc:
            _log.warning("BLE tasks did not cancel in %.1f s (%r)", timeout_s, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.loop.close()


class BleLink:
    """Keep one BLE sensor connected and streaming; reconnect with backoff; stop cleanly.

    Args:
        sensor: sensor name (stream source), for events and logs.
        address: MAC (Linux/Windows) or CoreBluetooth UUID (macOS).
        backend: module with BleakClient/BleakScanner (see :func:`load_backend`).
        profile: the device's start/stop sequence.
        events: queue the node drains.
        connect_lock: serialises connects of all links of a node (created on the loop).
        reconnect_max_s: longest wait between attempts, s.
        scan_timeout_s: how long one search for the address may take, s.
    """

    def __init__(self, sensor: str, address: str, backend: ModuleType, profile: DeviceProfile,
                 events: queue.Queue, connect_lock: asyncio.Lock, *, reconnect_max_s: float = 10.0,
                 scan_timeout_s: float = 5.0, log: logging.LoggerAdapter | None = None) -> None:
        self.sensor, self.address = sensor, address
        self._backend, self._profile, self._events = backend, profile, events
        self._lock = connect_lock
        self._errors = backend_errors(backend)
        self._reconnect_max_s = reconnect_max_s
        self._scan_timeout_s = scan_timeout_s
        self._log = log or _log
        self.client: Any = None
        self.connected = False
        self.connects = 0
        self.failures = 0
        self._stopping = False
        self._dropped: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._host_problem: str | None = None  # logged host-side reason (no bus, no bluetoothd)

    def _push(self, kind: EventKind, data: bytes | bytearray = b"", source: str = "") -> None:
        self._events.put(LinkEvent(self.sensor, kind, time.monotonic_ns(), bytes(data), source))

    def _on_disconnect(self, client: Any) -> None:
        if client is self.client and self._dropped is not None:
            self._dropped.set()

    def start(self) -> None:
        """Run the link (call on the loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.sensor)

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the node, which raises it in poll
            self.connected = False
            self._log.exception("%s (%s): BLE link failed", self.sensor, self.address)
            self._push("failed", f"{type(exc).__name__}: {exc}".encode())

    async def _keep_connected(self) -> None:
        backoff = RECONNECT_START_S
        while not self._stopping:
            try:
                await self._connect_and_stream()
                backoff = RECONNECT_START_S
                if self._stopping:
                    return
                self.connected = False
                self._push("disconnected")
                self._log.warning("%s (%s) disconnected; reconnecting", self.sensor, self.address)
            except self._errors as exc:
                self.connected = False
                self.failures += 1
                problem = service_problem(exc)
                if problem:  # the host, not the device: say so once, with the fix
                    level = self._log.warning if problem != self._host_problem else self._log.debug
                    self._host_problem = problem
                    level("%s (%s): BLE unavailable on this host: %s; retrying every %.0f s",
                          self.sensor, self.address, problem, self._reconnect_max_s)
                else:
                    level = self._log.warning if self.failures % 10 == 1 else self._log.debug
                    level("%s (%s): %s: %s; retry in %.1f s", self.sensor, self.address,
                          type(exc).__name__, exc, backoff)
                await self._drop_client()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._reconnect_max_s)

    async def _connect_and_stream(self) -> None:
        b = self._backend
        async with self._lock:
            device = await b.BleakScanner.find_device_by_address(self.address,
                                                                timeout=self._scan_timeout_s)
            if device is None:
                raise DeviceTimeout(f"not found in a {self._scan_timeout_s:g} s scan (switched "
                                    "off, out of range, or connected to another host?)")
            self._dropped = asyncio.Event()
            self.client = b.BleakClient(device, disconnected_callback=self._on_disconnect)
            await self.client.connect()
        if self._stopping:
            return
        self.connects += 1
        self._host_problem = None
        self._push("connected")  # queued before any notification of this connection
        await self._profile.start(self.client, self._push)
        self.connected = True
        self._log.info("%s (%s) streaming (connection #%d)", self.sensor, self.address,
                       self.connects)
        await self._dropped.wait()

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            try:
                await client.disconnect()
            except self._errors as exc:
                self._log.debug("%s: disconnect after failure failed: %s", self.sensor, exc)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop streaming on the device, stop notifications, disconnect; end the link."""
        self._stopping = True
        client = self.client
        if client is not None and client.is_connected and self.connected:
            await self._bounded(self._profile.stop(client), timeout_s, "stop streaming")
        if client is not None and client.is_connected:
            await self._bounded(client.disconnect(), timeout_s, "disconnect")
        self.connected = False
        if self._dropped is not None:
            self._dropped.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _bounded(self, aw: Awaitable[Any], timeout_s: float, what: str) -> None:
        try:
            await asyncio.wait_for(aw, timeout_s)
        except self._errors as exc:
            self._log.warning("%s (%s): %s failed: %s: %s", self.sensor, self.address, what,
                              type(exc).__name__, exc)
