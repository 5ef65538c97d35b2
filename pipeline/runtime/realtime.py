"""Real-time scheduling for the threads of latency-critical groups (``realtime_groups:``)."""

from __future__ import annotations

import logging
import os

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
