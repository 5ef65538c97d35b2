"""ZeroMQ publisher and subscriber wrappers for inproc, ipc and tcp endpoints.

High-water marks are set on purpose: a publisher buffers up to ``PUB_HWM``
messages per subscriber (about 15 minutes of a 100 Hz sensor) so that lossless
inputs such as the recorder never lose data to a short stall; drop-oldest
inputs drain their socket eagerly and drop in the node's own queue, where the
drop is counted. The publisher is an XPUB socket, so it sees its subscribers'
subscriptions: that is the readiness handshake (no data before every expected
subscriber is connected) instead of a sleep.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import numpy as np
import zmq

from pipeline.runtime.curve import ClientKeys, ServerKeys, secure_client, secure_server
from pipeline.runtime.errors import ConfigError, MessageError
from pipeline.runtime.message import Block, Decoder, Encoder, Flag, Header, StreamInfo

_JSON = int(Flag.JSON)
SUBSCRIPTION_POLL_S = 0.02  # publish() re-reads (un)subscriptions at most this often

log = logging.getLogger("imuflow.bus")

PUB_HWM = 100_000
SUB_HWM = 100_000
RECONNECT_IVL_MS = 50


def check_endpoint(endpoint: str, *, allow_remote: bool = False) -> str:
    """Validate an endpoint; tcp must bind to loopback unless ``allow_remote`` is set."""
    scheme = endpoint.split("://", 1)[0]
    if scheme not in ("inproc", "ipc", "tcp"):
        raise ConfigError(f"endpoint {endpoint!r}: scheme must be inproc://, ipc:// or tcp://")
    if scheme == "tcp":
        parsed = urlparse(endpoint)
        host = parsed.hostname or ""
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not host or port is None or not 1 <= port <= 65535:
            raise ConfigError(f"endpoint {endpoint!r} must be tcp://HOST:PORT with a port "
                              "1-65535, e.g. tcp://127.0.0.1:5556")
        if not allow_remote and not _is_loopback(host):
            raise ConfigError(
                f"endpoint {endpoint!r} is reachable from other hosts; use tcp://127.0.0.1:PORT, "
                "or set allow_remote: true and CURVE keys (imuflow keys)")
    return endpoint


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_epoch() -> int:
    """A publisher incarnation id: changes when a node restarts, so receivers see the gap."""
    return int.from_bytes(os.urandom(4), "little") or 1


def is_remote(endpoint: str) -> bool:
    """True for a tcp endpoint that other hosts can reach (not loopback)."""
    return endpoint.startswith("tcp://") and not _is_loopback(urlparse(endpoint).hostname or "")


class Publisher:
    """Publishes blocks on an XPUB socket bound to one or more endpoints.

    Endpoints reachable from other hosts, and tcp endpoints on loopback when
    ``server_keys`` are given, get a second socket secured with CURVE, so local
    subscribers on ipc/inproc need no keys.
    """

    def __init__(self, ctx: zmq.Context, endpoints: list[str], *, hwm: int = PUB_HWM,
                 allow_remote: bool = False, server_keys: ServerKeys | None = None) -> None:
        secured = [ep for ep in endpoints if is_remote(ep) or (
            server_keys is not None and ep.startswith("tcp://"))]
        local = [ep for ep in endpoints if ep not in secured]
        remote = [ep for ep in endpoints if is_remote(ep)]
        for ep in endpoints:
            check_endpoint(ep, allow_remote=allow_remote)
        if remote and server_keys is None:
            raise ConfigError(f"endpoint {remote[0]!r} is reachable from other hosts and needs "
                              "CURVE keys: set `curve: {secret: ..., authorized: ...}` "
                              "(create them with `imuflow keys DIR`)")
        self._sock = self._xpub(ctx, hwm, local)
        self._remote = None
        self._auth = None
        if secured:
            self._remote = ctx.socket(zmq.XPUB)
            self._remote.setsockopt(zmq.SNDHWM, hwm)
            self._remote.setsockopt(zmq.LINGER, 0)
            self._auth = secure_server(ctx, self._remote, server_keys)
            for ep in secured:
                self._remote.bind(ep)
        self.endpoints = list(endpoints)
        self.epoch = new_epoch()
        self._seq: dict[str, int] = {}
        self._enc = Encoder()
        self.subscriptions: Counter[str] = Counter()
        self._wanted_cache: dict[str, bool] = {}  # topic -> a subscription matches it
        self._subs_due = 0.0  # monotonic time of the next subscription poll in publish()
        self._json_infos: dict[str, StreamInfo] = {}

    @staticmethod
    def _xpub(ctx: zmq.Context, hwm: int, endpoints: list[str]) -> zmq.Socket:
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, 500)
        for ep in endpoints:
            if ep.startswith("ipc://") and os.path.exists(ep[6:]):
                os.unlink(ep[6:])  # stale socket file of a crashed incarnation
            sock.bind(ep)
        return sock

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int:
        """Send one block; ``data`` is (n, *info.shape) of info's dtype, or a JSON object."""
        flags = int(flags)
        n = 1 if flags & _JSON else (0 if data is None else len(data))
        seq = self._seq.get(info.stream, 0)
        self._seq[info.stream] = seq + 1
        if self._remote is None and not self._wanted(topic):
            return seq  # nobody subscribes (e.g. all consumers are direct): skip the encoding
        header = Header(info=info, seq=seq, t_host=t_host, t_sensor=t_sensor, n=n,
                        flags=flags, epoch=self.epoch)
        payload = data if data is not None else np.empty(0, np.uint8)
        frames = self._enc.encode(topic.encode(), header, payload)
        self._sock.send_multipart(frames, copy=False)
        if self._remote is not None:
            self._remote.send_multipart(frames, copy=False)
        return seq

    def send_frames(self, frames: list[bytes]) -> None:
        """Send raw frames as they are (bridges, fault injection); no header is added."""
        self._sock.send_multipart(frames)

    def publish_json(self, topic: str, obj: object) -> int:
        """Send a JSON object (status and control-like topics) on ``topic``."""
        info = self._json_infos.get(topic)
        if info is None:
            info = self._json_infos[topic] = StreamInfo(stream=topic, kind=topic.split("/")[-1])
        return self.publish(topic, info, obj, t_host=time.monotonic_ns(), flags=Flag.JSON)

    def poll_subscriptions(self) -> Counter[str]:
        """Read pending (un)subscribe messages; return the live count per topic."""
        while self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # no exception when none waits
            msg = self._sock.recv(zmq.NOBLOCK)
            if msg:
                topic = msg[1:].decode(errors="replace")
                self.subscriptions[topic] += 1 if msg[0] == 1 else -1
                self._wanted_cache.clear()
        return self.subscriptions

    def _wanted(self, topic: str) -> bool:
        """True if a subscription matches ``topic`` (prefix match, as ZeroMQ filters).

        Subscriptions are re-read at most every SUBSCRIPTION_POLL_S, so a subscriber that
        connects mid-stream misses at most that much more than ZeroMQ would make it miss.
        """
        now = time.monotonic()
        if now >= self._subs_due:
            self._subs_due = now + SUBSCRIPTION_POLL_S
            self.poll_subscriptions()
        hit = self._wanted_cache.get(topic)
        if hit is None:
            hit = self._wanted_cache[topic] = any(
                k > 0 and topic.startswith(s) for s, k in self.subscriptions.items())
        return hit

    def wait_subscribers(self, expected: dict[str, int], timeout_s: float) -> bool:
        """Block until each topic has at least the expected number of subscriptions."""
        deadline = time.monotonic() + timeout_s
        while True:
            subs = self.poll_subscriptions()
            if all(subs[t] >= k for t, k in expected.items()):
                return True
            if time.monotonic() >= deadline:
                return False
            self._sock.poll(20, zmq.POLLIN)

    def close(self, linger_ms: int = 500) -> None:
        """Close the sockets; queued local messages get ``linger_ms`` to reach subscribers."""
        self._sock.close(linger=linger_ms)
        if self._remote is not None:
            self._remote.close()
            self._auth.stop()


class Subscriber:
    """Receives blocks of exact topics from one or more publishers on one SUB socket."""

    def __init__(self, ctx: zmq.Context, sources: list[tuple[str, str]], *,
                 hwm: int = SUB_HWM, client_keys: ClientKeys | None = None) -> None:
        """``sources``: (endpoint, topic) pairs, topic as ``node/topic``."""
        self.socket = ctx.socket(zmq.SUB)
        if client_keys is not None:
            secure_client(self.socket, client_keys)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.topics = {topic for _, topic in sources}
        for ep in dict.fromkeys(ep for ep, _ in sources):
            self.socket.connect(ep)
        for topic in sorted(self.topics):
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._dec = Decoder()
        self.bad_messages = 0
        self.last_error = ""

    def recv(self, *, block: bool = False) -> Block | None:
        """Return the next block, or None when nothing is waiting (or the message was bad)."""
        try:
            frames = self.socket.recv_multipart(0 if block else zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            blk = self._dec.decode(frames)
        except MessageError as exc:
            self.bad_messages += 1
            self.last_error = str(exc)
            log.warning("dropped malformed message: %s", exc)
            return None
        if blk.topic not in self.topics:
            return None  # prefix match of a longer topic name
        return blk

    def drain(self, limit: int = 10_000) -> list[Block]:
        """Return every block waiting now (up to ``limit``), in arrival order."""
        out: list[Block] = []
        for _ in range(limit):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                blk = self._dec.decode(frames)
            except MessageError as exc:
                self.bad_messages += 1
                self.last_error = str(exc)
                log.warning("dropped malformed message: %s", exc)
                continue
            if blk.topic in self.topics:
                out.append(blk)
        return out

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
