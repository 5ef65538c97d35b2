"""Worker process: runs the nodes of one process group, each in its own thread.

Started by the supervisor as ``python -m pipeline.runtime.worker RUN_DIR GROUP``. It
stops gracefully (drain, end of stream) on SIGTERM or SIGINT; if any node fails,
the whole process exits at once with status 1, without ending its streams, so
the supervisor restarts it and downstream nodes see a gap rather than an end.
"""

from __future__ import annotations

import cProfile
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import zmq

from pipeline.runtime.errors import ConfigError, ModelRejected, RecordingError, SessionFileError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.log_setup import setup_logging
from pipeline.runtime.node_loop import NodeLoop, connect_direct
from pipeline.runtime.registry import resolve
from pipeline.runtime.run_dir import check_private, read_manifest

log = logging.getLogger("imuflow.worker")
EXIT_CONFIG = 78  # sysexits EX_CONFIG: a node's configuration is wrong; do not restart
# s from a stop request (SIGTERM/SIGINT) until the kernel ends the process (SIGALRM's default
# action) whatever its threads are doing. The supervisor kills its workers 1.8 s after
# SIGTERM, so this only acts when the supervisor is gone (its kill -9 sends SIGTERM through
# PR_SET_PDEATHSIG) and the shutdown hangs: once seen, a worker whose node thread had ended
# stayed with its main thread blocked in a futex wait, an orphan.
STOP_ALARM_S = 5
PARENT_POLL_S = 0.5  # s between checks that the supervisor is still this process's parent
SUPERVISOR_PID_ENV = "IMUFLOW_SUPERVISOR_PID"  # set by the supervisor for the workers it spawns
NOT_TRANSIENT = (ConfigError, ModelRejected, RecordingError, SessionFileError)


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies (no orphans)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def watch_parent(parent: int, stop: threading.Event, group: str) -> None:
    """Until this process loses its parent ``parent`` (pid; the supervisor's kill -9 re-parents
    it), then set ``stop`` and end the process STOP_ALARM_S s later whatever its threads do.

    The supervisor's death also sends SIGTERM (``die_with_parent``), but a Python signal
    handler runs only when the main thread gets back to Python code; in fresh-clone CI a
    worker whose main thread sat in a blocking C call never ran it and was left an orphan,
    its stop alarm never armed. This thread needs no signal.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    # the kernel ends the process at the alarm (SIGALRM's default action) whatever this or any
    # thread blocks on afterwards, even the log call below
    signal.alarm(STOP_ALARM_S)
    stop.set()
    log.warning("[%s] supervisor (pid %d) gone: stopping; exit in %d s at the latest", group,
                parent, STOP_ALARM_S)
    time.sleep(STOP_ALARM_S)
    log.error("[%s] nodes did not stop within %d s of the supervisor's end; exiting", group,
              STOP_ALARM_S)
    logging.shutdown()
    os._exit(1)


def _name_os_thread(name: str) -> None:
    """Name the OS thread after the node (``/proc/PID/task/TID/comm``: per-node CPU use)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _freeze_after_setup(loops: list[NodeLoop]) -> None:
    """Once every node is set up, move all objects so far out of the garbage collector's view.

    Models, numba and scipy leave millions of long-lived objects; a full collection
    scanning them stalls every thread of the process for tens of ms, which showed as
    the worst end-to-end latencies. Frozen objects are never scanned again.
    """
    for loop in loops:
        loop.setup_done.wait()
    gc.collect()
    gc.freeze()


def _run_profiled(loop: NodeLoop, out: Path) -> None:
    """Run a node loop under cProfile and write its stats to ``out`` (IMUFLOW_PROFILE_DIR).

    The thread's profile covers the node and, in a direct group, the consumers it calls.
    """
    prof = cProfile.Profile()
    prof.enable()
    try:
        loop.run()
    finally:
        prof.disable()
        out.parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(out)


def run_group(run_dir: Path, group: str, parent: int | None = None) -> int:
    """Run every node of ``group`` until they end; return the process exit status. With
    ``parent`` (the supervisor's pid) the nodes stop when that process is gone."""
    check_private(run_dir, "run folder")  # sockets and manifest only in a folder of ours
    manifest = read_manifest(run_dir)
    graph = load_graph(manifest.config)
    node_ids = graph.groups[group]
    ctx = zmq.Context()
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        signal.alarm(STOP_ALARM_S)  # a shutdown stuck anywhere still ends (no orphans)

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if parent is not None:
        threading.Thread(target=watch_parent, args=(parent, stop, group), daemon=True,
                         name="watch_parent").start()

    loops = {nid: NodeLoop(graph.node(nid), graph, ctx, run_dir, stop) for nid in node_ids}
    connect_direct(loops, graph)

    profile_dir = os.environ.get("IMUFLOW_PROFILE_DIR")

    def target(node_id: str) -> None:
        _name_os_thread(node_id)
        try:
            if profile_dir:
                _run_profiled(loops[node_id], Path(profile_dir) / f"{node_id}.prof")
            else:
                loops[node_id].run()
        except NOT_TRANSIENT as exc:  # restarting cannot help
            log.error("[%s] cannot run: %s", node_id, exc)
            logging.shutdown()
            os._exit(EXIT_CONFIG)
        except BaseException:  # noqa: BLE001 - a failed node takes its process down
            log.exception("[%s] node failed; exiting so the supervisor restarts it", node_id)
            logging.shutdown()
            os._exit(1)
        for loop in loops.values():  # its consumers here: its end of stream may have been lost
            if loop is not loops[node_id]:
                loop.producers_ended([node_id])

    threads = [threading.Thread(target=target, args=(nid,), name=nid, daemon=True)
               for nid in node_ids]
    for t in threads:
        t.start()
    threading.Thread(target=_freeze_after_setup, args=(list(loops.values()),), daemon=True,
                     name="gc_freeze").start()
    for loop in loops.values():  # GUI nodes need the main thread (Qt)
        if loop.spec and resolve(loop.spec.kind).main_thread:
            loop.setup_done.wait()
            if loop.node is not None and loop.state != "stopped":
                try:
                    loop.node.run_main_thread(stop)
                except BaseException:  # noqa: BLE001 - same policy as a failed node thread
                    log.exception("[%s] main-thread part failed; exiting", loop.spec.id)
                    logging.shutdown()
                    os._exit(1)
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m pipeline.runtime.worker RUN_DIR GROUP``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m pipeline.runtime.worker RUN_DIR GROUP\n")
        return 2
    die_with_parent()
    parent = os.getppid()
    setup_logging(os.environ.get("IMUFLOW_LOG_LEVEL", "INFO"))
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor and int(supervisor) != parent:
        # the supervisor died while this process was still importing, before the death
        # signal was asked for: nothing would ever stop it
        log.error("[%s] supervisor (pid %s) ended before this worker started (parent now pid "
                  "%d); exiting", argv[1], supervisor, parent)
        return 1
    return run_group(Path(argv[0]), argv[1], parent=parent if parent != 1 else None)


if __name__ == "__main__":
    code = main()
    # Every node has torn down and closed its files and sockets: skip the interpreter's
    # slow shutdown (Qt, Mesa, numba take seconds under load, past the stop deadline).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
