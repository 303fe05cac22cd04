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


def respawn(stack: LocalStack, *names: str) -> None:
    """Stop the daemons `names` if they still run, start them again with their recorded commands, all at once,
    and wait until each is ready (two brokers of three form a quorum only together). The single-mode runtime
    resumes its job from the newest retained checkpoint, as `up` does. Raises StartError when one does not become
    ready in time.
    """
    old = [stack.state.proc(name) for name in names]
    for proc in old:
        procs.stop(proc, stack.config.stop_timeout_s)
    if names == ("runtime",):
        stack.start_job(resume=True)
    else:
        stack.start_daemons({proc.name: list(proc.argv) for proc in old})


def resubmit(stack: LocalStack) -> str:
    """Cluster mode: submit the job again to the running JobManager (after a JobManager was lost with its job),
    resuming from the newest retained checkpoint of any earlier job, as `up` does after `down`, and wait until it
    runs. Returns the new job's id; StartError when it does not run in time.
    """
    stack.start_job(resume=True)
    return stack.require_job()
