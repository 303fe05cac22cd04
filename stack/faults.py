"""The faults the fault tests and the soak inject into a running stack, and the steps that bring it back:
signal one daemon, start it again, submit the job again after its JobManager was lost, cut one broker off from
the others and heal the cut.
"""

from __future__ import annotations

import signal
import subprocess

from . import kafka, procs
from .config import HOST, StackConfig
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


class BrokerPartition:
    """Broker `name` cut off from the other brokers while every client still reaches all three: iptables drops the
    loopback packets from its cgroup to the others' listeners (client and controller) and from theirs to its own.
    The rules match sockets by the cgroup of the broker that opened them (the stack's `broker_cgroup`), on every
    packet (no connection tracking), so open connections stall too. `heal` deletes exactly the rules `cut` inserted.
    """

    def __init__(self, config: StackConfig, name: str) -> None:
        if kafka.broker_cgroup(config, name) is None:
            raise RuntimeError(f"{name}: no broker cgroup (start the stack with broker_cgroup set)")
        number = kafka.broker_number(name)
        others = [kafka.broker_name(n) for n in config.broker_numbers if n != number]
        self.name = name
        self.rules = tuple(
            rule for other in others for rule in (_drop(config, name, other), _drop(config, other, name))
        )
        self._inserted: list[list[str]] = []

    def cut(self) -> None:
        """Insert the rules; RuntimeError when iptables refuses one (those inserted stay until `heal`)."""
        for rule in self.rules:
            _iptables("-I", rule)
            self._inserted.append(rule)

    def heal(self) -> None:
        """Delete the rules `cut` inserted, each once; nothing when none is left."""
        while self._inserted:
            _iptables("-D", self._inserted[-1])
            self._inserted.pop()


def _drop(config: StackConfig, sender: str, receiver: str) -> list[str]:
    """The OUTPUT rule dropping what broker `sender`'s sockets send to broker `receiver`'s listeners."""
    ports = ",".join(map(str, config.ports.broker(kafka.broker_number(receiver))))
    cgroup = str(kafka.broker_cgroup(config, sender))
    return ["OUTPUT", "-o", "lo", "-d", HOST, "-p", "tcp", "-m", "multiport", "--dports", ports,
            "-m", "cgroup", "--path", cgroup, "-j", "DROP"]  # fmt: skip


def _iptables(action: str, rule: list[str]) -> None:
    # -w: wait for the xtables lock, which other iptables users on the machine may hold.
    result = subprocess.run(["iptables", "-w", action, *rule], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"iptables {action} {' '.join(rule)}: {result.stderr.strip()}")
