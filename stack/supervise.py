"""`up --foreground` and `watch`: watch the started processes; when a daemon dies, stop everything (honcho-style)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import procs
from .local import LocalStack
from .readiness import tail
from .state import run_lock_held


def _exit_text(status: int | None) -> str:
    # A daemon recorded by an earlier `up` is not this process's child: its exit status cannot be known.
    return "exit status unknown" if status is None else f"exit {status}"


def watch(stack: LocalStack, interval: float = 1.0, keep_going: Callable[[], bool] = lambda: True) -> int:
    """Block until a stop is requested or `keep_going` turns false (0), or a process dies (1); then stop the
    whole stack. The processes watched are those the run folder records each time: another command (`rescale`,
    `upgrade-greeter`) may stop and start some, and while it holds the run lock nothing counts as a death.
    """
    extras = {extra.name for extra in stack.config.extras}
    finished: set[int] = set()
    code = 0
    while not stack.stop_event.wait(interval) and keep_going():
        if run_lock_held(stack.config.run_dir):
            continue
        stack.refresh()
        dead = [p for p in stack.state.procs if p.pid not in finished and not procs.is_running(p)]
        for proc in dead:
            status = procs.exit_code(proc)
            if proc.name in extras and status == 0:  # a generator with --count finishing is not a failure
                stack.report(f"{proc.name} finished")
                finished.add(proc.pid)
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
