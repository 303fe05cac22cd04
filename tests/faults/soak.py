"""The soak: many messages through a real stack while faults strike over and over, then every greeting checked.

    scripts/soak [--messages 100000] [--names 200] [--faults 12] [--keep]

One stack (free ports, a temporary run folder, the greeter behind the HTTP fault proxy), the input produced
round-robin in 2 x faults + 1 parts; before each fault at least two more checkpoints complete, then the
fault strikes, the next part is produced, and the run waits for the first greeting answering it (the
recovery time). The faults cycle through: TaskManager kill -9, one gunicorn worker kill -9, the greeter's
process group killed for 5 s, the Kafka broker killed for 5 s, a burst of 500s and a burst of connection
resets from the proxy. At the end every name must have exactly 1..k under read_committed, k read from
`names` as stored. Prints a `[fault result]` line per run (as the fault tests do) and exits 1 on any loss or
duplicate. Took 3 minutes on 2 cores for the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stack import procs
from stack.config import Ports, StackConfig
from stack.faults import kill, respawn
from stack.local import LocalStack
from tests.support.waiting import wait_for

from .http_proxy import FaultKind, FaultProxy
from .schedule import Scenario, greeter_workers

OUTAGE_S = 5.0
SPOILED_REQUESTS = 10


def _outage(stack: LocalStack, name: str) -> None:
    """kill -9 a daemon's process group, keep it down OUTAGE_S, start it again."""
    old = stack.state.proc(name)
    kill(stack, name)
    wait_for(f"{name} to exit", lambda: not procs.group_members(old.pid), 20)
    time.sleep(OUTAGE_S)
    respawn(stack, name)


def _kill_taskmanager(stack: LocalStack) -> None:
    kill(stack, "taskmanager")
    respawn(stack, "taskmanager")


def _kill_worker(stack: LocalStack) -> None:
    workers = greeter_workers(stack.state.proc("greeter").pid)
    os.kill(min(workers), signal.SIGKILL)


def faults(stack: LocalStack, proxy: FaultProxy) -> list[tuple[str, Callable[[], None]]]:
    return [
        ("kill -9 taskmanager", lambda: _kill_taskmanager(stack)),
        ("kill -9 one gunicorn worker", lambda: _kill_worker(stack)),
        (f"kill -9 greeter, {OUTAGE_S:.0f} s down", lambda: _outage(stack, "greeter")),
        (f"kill -9 kafka, {OUTAGE_S:.0f} s down", lambda: _outage(stack, "kafka")),
        (f"{SPOILED_REQUESTS} replies of 500", lambda: proxy.plan.arm(FaultKind.ERROR, count=SPOILED_REQUESTS)),
        (f"{SPOILED_REQUESTS} resets", lambda: proxy.plan.arm(FaultKind.RESET, count=SPOILED_REQUESTS)),
    ]


def soak(stack: LocalStack, proxy: FaultProxy, names: int, rounds: int, strikes: int) -> bool:
    cycle = faults(stack, proxy)
    step = rounds / (2 * strikes + 1)
    with Scenario(stack, f"soak: {names * rounds} messages, {strikes} faults", names, rounds) as run:
        run.produce_until(round(step))
        started = time.monotonic()
        for index in range(strikes):
            label, action = cycle[index % len(cycle)]
            run.ready_to_strike()
            fault = run.strike(f"#{index + 1} {label}", action)
            run.produce_until(round((2 * index + 2) * step))
            wait_for(f"{label} to be spent", lambda: not proxy.plan.armed, 120)
            run.produce_until(round((2 * index + 3) * step))
            run.await_recovery(fault, deadline_s=300)
            print(f"[soak] {index + 1}/{strikes} faults, {run.produced} messages produced, "
                  f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        report, result = run.finish(deadline_s=600, expect_failure=False, injected=dict(proxy.plan.injected))
    print("\n".join(report.summary()))
    print(f"[soak] lost {result.lost}, duplicated {result.duplicated}, aborted {result.aborted}, "
          f"job failures {result.failures}, recovery {min(result.recovery_s)}-{max(result.recovery_s)} s")  # fmt: skip
    return report.ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="total requests (default: %(default)s)")
    parser.add_argument("--names", type=int, default=200, help="distinct names (default: %(default)s)")
    parser.add_argument("--faults", type=int, default=12, help="faults struck (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs) after the run")
    args = parser.parse_args(argv)
    rounds = args.messages // args.names
    if rounds < 2 * args.faults + 1:
        parser.error(f"--messages / --names = {rounds} rounds: at least {2 * args.faults + 1} are needed")
    run_dir = Path(tempfile.mkdtemp(prefix="greeter-soak-"))
    config = StackConfig(run_dir=run_dir / "run", ports=Ports.free(), seen_count_ttl=0, mode="cluster")
    with FaultProxy(config.ports.greeter) as proxy:
        stack = LocalStack(dataclasses.replace(config, endpoint_port=proxy.port), report=print)
        try:
            stack.up(fresh=True)
            ok = soak(stack, proxy, args.names, rounds, args.faults)
        finally:
            stack.down()
            print(f"[soak] run folder {run_dir}" + (" (kept)" if args.keep else " (removed)"))
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
