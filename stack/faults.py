"""The faults the fault tests and the soak inject into a running stack, and the steps that bring it back:
signal one daemon, start it again, submit the job again after its JobManager was lost.
"""

from __future__ import annotations

import signal

from . import procs
from .local import LocalStack


def kill(stack: LocalStack, name: str, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the recorded process `name` and its process group; RuntimeError when it is not running."""
    if not procs.send(stack.state.proc(name), sig):
        raise RuntimeError(f"{name} is not running")


def respawn(stack: LocalStack, name: str) -> None:
    """Stop daemon `name` if it still runs, start it again with its recorded command and wait until it is ready.
    The single-mode runtime resumes its job from the newest retained checkpoint, as `up` does. Raises StartError
    when it does not become ready in time.
    """
    old = stack.state.proc(name)
    procs.stop(old, stack.config.stop_timeout_s)
    if name == "runtime":
        stack.start_job(resume=True)
    else:
        stack.start_daemon(name, list(old.argv))


def resubmit(stack: LocalStack) -> str:
    """Cluster mode: submit the job again to the running JobManager (after a JobManager was lost with its job),
    resuming from the newest retained checkpoint of any earlier job, as `up` does after `down`, and wait until it
    runs. Returns the new job's id; StartError when it does not run in time.
    """
    stack.start_job(resume=True)
    return stack.require_job()
