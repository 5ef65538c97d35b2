"""RemoteInput: bring topics of a graph running on another host into this graph."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import zmq

from pipeline.runtime.bus import Subscriber, check_endpoint, is_remote
from pipeline.runtime.curve import ClientKeys
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import Source


class RemoteInput(Source):
    """Subscribe to ``node/topic`` streams of a remote publisher and republish them here.

    Ports:
        * (out): each remote ``node/topic`` comes out as ``<this id>/<topic>`` with its
            samples, stream metadata (source sensor kept) and time stamps unchanged.
    A non-loopback endpoint needs CURVE keys: this host's key pair and the server's
    public key (``imuflow keys``); a publisher without this client's key sends nothing.
    """

    outputs = ("*",)

    @dataclass(frozen=True)
    class Params:
        endpoint: str  # tcp://HOST:PORT of the remote node's `endpoint`
        topics: list[str]  # remote streams, node/topic (e.g. sensors/imu.raw)
        curve_secret: Path | None = None  # this host's .key_secret file
        curve_server_public: Path | None = None  # the remote publisher's .key file

    def setup(self) -> None:
        p = self.params
        check_endpoint(p.endpoint, allow_remote=True)
        keys = None
        if p.curve_secret or p.curve_server_public:
            if not (p.curve_secret and p.curve_server_public):
                raise ConfigError(f"node '{self.id}': set both curve_secret and "
                                  "curve_server_public", key="curve_secret")
            keys = ClientKeys(self.context.resolve(p.curve_secret),
                              self.context.resolve(p.curve_server_public))
        elif is_remote(p.endpoint):
            raise ConfigError(f"node '{self.id}': {p.endpoint} is on another host: set "
                              "curve_secret and curve_server_public (imuflow keys)",
                              key="curve_secret")
        self._sub = Subscriber(zmq.Context.instance(), [(p.endpoint, t) for t in p.topics],
                               client_keys=keys)
        self._infos: dict[str, StreamInfo] = {}

    def poll(self, timeout_s: float) -> bool:
        if not self._sub.socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return True
        for blk in self._sub.drain():
            if blk.eos:
                continue
            topic = blk.topic.split("/", 1)[1]
            info = self._infos.get(blk.info.stream)
            if info is None or info.meta != blk.info.meta:
                suffix = blk.info.stream.split(":", 1)[1:]
                stream = f"{self.id}/{topic}" + (f":{suffix[0]}" if suffix else "")
                info = self._infos[blk.info.stream] = replace(blk.info, stream=stream)
            self.emit(topic, blk.data, t_host=blk.t_host, t_sensor=blk.header.t_sensor,
                      info=info, gap=blk.gap)
        self.stats.bad_messages = self._sub.bad_messages
        return True

    def teardown(self) -> None:
        if hasattr(self, "_sub"):
            self._sub.close()
