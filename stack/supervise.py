"""`up --foreground` and `watch`: watch the started processes; when a daemon dies, stop everything (honcho-style)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import procs
from .local import LocalStack
from .readiness import tail


def _exit_text(status: int | None) -> str:
    # A daemon recorded by an earlier `up` is not this process's child: its exit status cannot be known.
    return "exit status unknown" if status is None else f"exit {status}"


def watch(stack: LocalStack, interval: float = 1.0, keep_going: Callable[[], bool] = lambda: True) -> int:
    """Block until a stop is requested or `keep_going` turns false (0), or a process dies (1); then stop the
    whole stack.
    """
    extras = {extra.name for extra in stack.config.extras}
    watched = list(stack.state.procs)
    code = 0
    while not stack.stop_event.wait(interval) and keep_going():
        dead = [p for p in watched if not procs.is_running(p)]
        for proc in dead:
            status = procs.exit_code(proc)
            if proc.name in extras and status == 0:  # a generator with --count finishing is not a failure
                stack.report(f"{proc.name} finished")
                watched.remove(proc)
                continue
            stack.report(
                f"{proc.name} (pid {proc.pid}) died ({_exit_text(status)}); stopping everything. "
                f"Last lines of {proc.log}:\n{tail(Path(proc.log))}"
            )
            code = 1
        if code:
            break
    stack.down()
    return code
