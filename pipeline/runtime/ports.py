"""Declared input ports of a node and their queue policies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class QueuePolicy(str, Enum):
    """What an input does when its node falls behind."""

    LOSSLESS = "lossless"  # keep every message (recorder, sync, observer)
    DROP_OLDEST = "drop_oldest"  # keep the newest queue_size messages (display)


@dataclass(frozen=True)
class Input:
    """An input port: which message kinds it accepts and its default queue policy.

    Attributes:
        accepts: message kinds (topic names such as ``imu.raw``) it takes; ``("*",)`` for any.
        many: whether several sources may feed it (fan-in).
        required: whether the graph must wire it.
        policy: default queue policy, overridable per graph edge.
        queue_size: default queue length for ``drop_oldest``.
    """

    accepts: tuple[str, ...] = ("*",)
    many: bool = False
    required: bool = True
    policy: QueuePolicy = QueuePolicy.LOSSLESS
    queue_size: int = 4

    def takes(self, kind: str) -> bool:
        """True if this port accepts messages of ``kind``."""
        return "*" in self.accepts or kind in self.accepts
