"""Real-time operation of latency-critical groups (``realtime_groups:``): SCHED_FIFO threads,
and CPUs kept out of slow-to-wake idle states while the group's process runs."""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path

log = logging.getLogger("imuflow.realtime")

RT_PRIORITY = 10  # SCHED_FIFO priority: above every normal process, below kernel threads (50)


def enter_realtime(node_id: str) -> bool:
    """Run the calling thread under SCHED_FIFO; warn (not fail) where that is not permitted.

    A FIFO thread is not preempted by normal processes (a training job, a compiler), so
    its latency does not grow with the machine's load. The kernel still keeps 5 % of each
    second for other work (``/proc/sys/kernel/sched_rt_runtime_us``).
    """
    if not hasattr(os, "sched_setscheduler"):
        log.warning("[%s] real-time scheduling is not available on this platform; running "
                    "with normal priority", node_id)
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except PermissionError:
        log.warning("[%s] real-time scheduling refused: run as root, or allow it for your user "
                    "(e.g. '@realtime - rtprio 20' in /etc/security/limits.conf and log in again, "
                    "or 'setcap cap_sys_nice+ep' on the Python binary); running with normal "
                    "priority", node_id)
        return False
    return True


# Linux PM QoS: while a process holds this file open with a value written, no CPU enters an
# idle state that takes longer than that many microseconds to leave (what cyclictest does)
CPU_LATENCY_DEVICE = Path("/dev/cpu_dma_latency")
_held_lock = threading.Lock()
_held: dict[Path, "CpuWakeLatency | None"] = {}  # held for the process's life; None: refused


class CpuWakeLatency:
    """A PM QoS request: CPUs idle only in states they leave within ``max_us`` us.

    Why: a CPU that sleeps deeply between 100 Hz frames (on a virtual machine, a halted
    vCPU) starts each frame with cold caches and TLBs. On the KVM guest of BENCHMARKS.md a
    10 us numpy step cost ~220 us of CPU after a 10 ms sleep and ~20 us with ``max_us=0``.
    The price: idle CPUs poll instead of sleeping (more power; a VM's vCPU looks busy to
    its host). The request ends when :meth:`release` runs or the process exits.
    """

    def __init__(self, max_us: int = 0, device: Path = CPU_LATENCY_DEVICE) -> None:
        self.device, self.max_us = device, max_us
        self._fd = os.open(device, os.O_WRONLY)  # OSError: absent or not permitted
        try:
            os.write(self._fd, struct.pack("i", max_us))
        except OSError:
            os.close(self._fd)
            raise

    def release(self) -> None:
        """End the request (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "CpuWakeLatency":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def current_cpu_wake_latency_us(device: Path = CPU_LATENCY_DEVICE) -> int | None:
    """The kernel's current PM QoS CPU latency target (us), or None where it cannot be read."""
    try:
        return struct.unpack("i", device.read_bytes()[:4])[0]
    except (OSError, struct.error):
        return None


def hold_cpu_awake(node_id: str, device: Path = CPU_LATENCY_DEVICE) -> bool:
    """Keep every CPU out of idle states slower than 0 us to leave, for the life of this
    process (one request per process, however many nodes ask); warn once (not fail) where
    the kernel does not offer it or does not permit it."""
    with _held_lock:
        if device in _held:
            return _held[device] is not None
        _held[device] = None
        try:
            _held[device] = CpuWakeLatency(0, device)
        except FileNotFoundError:
            log.warning("[%s] %s does not exist (not Linux, or a kernel without PM QoS): CPUs "
                        "may sleep deeply between frames, which costs latency", node_id, device)
            return False
        except OSError as exc:
            log.warning("[%s] cannot keep the CPUs awake (%s: %s): run as root, or let your "
                        "user write it (e.g. a udev rule 'KERNEL==\"cpu_dma_latency\", "
                        "GROUP=\"realtime\", MODE=\"0660\"'); CPUs may sleep deeply "
                        "between frames, which costs latency", node_id, device,
                        exc.strerror or exc)
            return False
    return True
