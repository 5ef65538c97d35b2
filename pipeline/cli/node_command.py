"""A control command to one node of a running graph, failing fast with what is running.

Used by ``imuflow command`` and ``imuflow swap``. The run is found by name, or is the
user's only running graph (:func:`pipeline.runtime.run_dir.find_run`); a node the run
does not have is refused at once with the run's nodes; a node that does not answer a
``ping`` within PROBE_S is looked up in the supervisor's status: ended, dead or
restarting is an error naming its state (within about a second, instead of waiting
the command's whole timeout), and a node that is running but busy (e.g. loading a
model for a swap) gets the command with the full timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.runtime.control import ControlTimeout, send_command
from pipeline.runtime.node_loop import ctl_endpoint
from pipeline.runtime.run_dir import RunInfo, describe_runs, find_run, live_runs
from pipeline.runtime.supervisor import supervisor_ctl_endpoint

PROBE_S = 0.5  # a live node answers ping within ms; its loop serves control every <= 100 ms
LIVE_STATES = ("starting", "setup", "waiting_subscribers", "ready", "running")


def node_endpoint(run: str | None, node: str) -> tuple[RunInfo, str]:
    """The run and the control endpoint of its node ``node``; LookupError names the nodes."""
    info = find_run(run)
    if node not in info.nodes:
        raise LookupError(f"run '{info.name}' has no node '{node}'; its nodes: "
                          f"{', '.join(info.nodes)}")
    return info, ctl_endpoint(info.path, node)


def command_node(run: str | None, node: str, cmd: str, args: dict | None = None, *,
                 timeout_s: float = 30.0) -> dict[str, Any]:
    """Send ``cmd`` to ``node`` of the run and return its reply (see the module docstring)."""
    info, endpoint = node_endpoint(run, node)
    _check_answers(info, node, endpoint)
    return send_command(endpoint, cmd, args, timeout_s=timeout_s)


def _check_answers(info: RunInfo, node: str, endpoint: str) -> None:
    """Return if the node answers or is alive but busy; else raise LookupError saying why."""
    if Path(endpoint.removeprefix("ipc://")).exists():
        try:
            send_command(endpoint, "ping", timeout_s=PROBE_S)
            return
        except ControlTimeout:
            pass
    try:
        nodes = send_command(supervisor_ctl_endpoint(info.path), "status",
                             timeout_s=PROBE_S)["status"]["nodes"]
    except (ControlTimeout, KeyError, TypeError):
        others = [r for r in live_runs() if r.path != info.path]
        raise LookupError(f"run '{info.name}' does not answer: it has ended or is stopping; "
                          f"running now: {describe_runs(others)}") from None
    state = nodes.get(node, {}).get("state", "unknown")
    if state in LIVE_STATES:
        return  # alive, busy with an earlier command: wait for the reply
    how = {"dead": f"died (exit code {nodes[node].get('exit_code')}) and is not restarted",
           "restarting": "is restarting; try again in a moment",
           "stopped": "has ended (its streams ended)"}.get(state, f"is {state}")
    running = [f"{n} ({s.get('state')})" for n, s in nodes.items()
               if s.get("state") in LIVE_STATES]
    raise LookupError(f"node '{node}' of run '{info.name}' {how}; running nodes: "
                      f"{', '.join(running) or 'none'}")
