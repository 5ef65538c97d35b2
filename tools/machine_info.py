"""Machine description written into every benchmark's JSON (shared by tools/bench_*.py)."""

from __future__ import annotations

import importlib
import os
import platform


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo ('' where unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                        "")
    except OSError:
        return ""


def machine(*modules: str, **extra: object) -> dict:
    """Platform, CPU, cores, load average, Python and the versions of ``modules``."""
    info: dict = {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
                  "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                  "python": platform.python_version()}
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            info[name] = None
            continue
        info[name] = getattr(mod, "__version__", "?")
        if name == "zmq":
            info["libzmq"] = mod.zmq_version()
    info.update(extra)
    return info
