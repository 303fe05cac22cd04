"""The floor in the greeter's place: `--with-floor` measures the same runtime, broker and topics with the greeter
swapped for bench/peers/floor.py on the greeter's port, so the two differ in the remote function alone.

The runtime calls one endpoint, so the two take turns: `FunctionServers.serve(system)` stops the one serving (by
its recorded PID, as `down` would: the greeter drains its kept-alive connections first) and starts the other, ready
once it answers and gunicorn's pid file names it, before that system is measured. Both are recorded as the stack's
`greeter`, so `down` stops whichever serves, and each is charged as the greeter's processes are.
"""

from __future__ import annotations

import sys
from pathlib import Path

from greeter.config.settings import Settings
from stack import daemons, procs
from stack.config import HOST, StackConfig
from stack.local import LocalStack

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "floor"
GREETER = "statefun"  # the system the stack's own greeter serves
APP = "bench.peers.floor:app"


def floor_argv(config: StackConfig, keepalive_s: int = Settings().keepalive_seconds) -> list[str]:
    """The floor under gunicorn as the stack runs the greeter: its port, worker count and pid file (the readiness
    check reads it), and the greeter's keep-alive (a shorter one would close connections the runtime still reuses).
    """
    return [sys.executable, "-m", "gunicorn", "--worker-class", "uvicorn_worker.UvicornWorker",
            "--workers", str(config.greeter_workers), "--bind", f"{HOST}:{config.ports.greeter}",
            "--pid", str(config.run_dir / "greeter.pid"), "--keep-alive", str(keepalive_s),
            "--no-control-socket", "--chdir", str(ROOT), APP]  # fmt: skip


def server_of(system: str) -> str:
    """Which server a system's measure needs on the greeter's port: the floor's, else the greeter's (the peer's
    measure needs neither and keeps whichever serves, idle)."""
    return FLOOR if system == FLOOR else GREETER


class FunctionServers:
    """Which function server the stack's greeter port has, swapped on demand."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.serving = GREETER  # what `up` started
        self.swaps = 0

    def serve(self, system: str) -> None:
        """Have `system`'s function server on the greeter's port, if it needs one."""
        if system not in (FLOOR, GREETER) or server_of(system) == self.serving:
            return
        stack = self.stack
        outcome = procs.stop(stack.state.proc("greeter"), stack.config.stop_timeout_s)
        stack.report(f"{self.serving}'s function server: {outcome}")
        argv = floor_argv(stack.config) if system == FLOOR else daemons.argv(stack.java(), stack.config, "greeter")
        stack.start_daemon("greeter", argv)
        self.serving = server_of(system)
        self.swaps += 1
