"""Faults of the function service: a gunicorn worker killed (gunicorn replaces it), and the whole greeter
killed (master and workers, one process group) for less and for more than module.yaml's `timeouts: call: 1min`.

Shorter than the call timeout, the runtime retries the failed calls and the job never restarts; longer, the
job restarts from its last checkpoint (and again each minute the greeter stays away). Either way no greeting is
lost or duplicated. The long outage makes this module the slowest of the suite (2-3 minutes for it alone):
module.yaml's call timeout is kept as shipped on purpose, so the test exercises the real one.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from stack import procs
from stack.config import HOST
from stack.faults import kill, respawn
from stack.local import LocalStack
from stack.readiness import port_free
from tests.support.waiting import wait_for

from .schedule import ROUNDS, Scenario, greeter_workers

pytestmark = pytest.mark.e2e

CALL_TIMEOUT_S = 60  # module.yaml: timeouts: call: 1min


@pytest.mark.timeout(600)
def test_greeter_worker_killed(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    master = fault_stack.state.proc("greeter").pid
    run = scenario("greeter worker kill -9")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    workers = greeter_workers(master)
    assert len(workers) == fault_stack.config.greeter_workers, workers
    victim = min(workers)
    run.produce_until(2 * ROUNDS // 3)
    fault = run.strike(f"kill -9 one gunicorn worker (pid {victim})", lambda: os.kill(victim, signal.SIGKILL))
    run.produce_until(ROUNDS)
    run.await_recovery(fault)

    # The fault happened: the worker is gone and gunicorn started another in its place.
    wait_for(
        "gunicorn to replace the killed worker",
        lambda: victim not in greeter_workers(master) and len(greeter_workers(master)) == len(workers),
        60,
    )
    report, _ = run.finish(expect_failure=False, replacement=sorted(greeter_workers(master) - workers))
    assert report.ok, "\n".join(report.summary())


def greeter_outage(stack: LocalStack, run: Scenario, down_s: float) -> int:
    """SIGKILL the greeter's whole process group (a SIGKILLed master alone leaves its workers holding the
    port), keep it down `down_s`, start it again."""
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(2 * ROUNDS // 3)
    # The rest is produced while the greeter is down (Kafka takes it; the runtime cannot deliver it).
    fault = run.strike(f"kill -9 greeter (group), {down_s:.0f} s down", lambda: kill(stack, "greeter"))
    old = stack.state.proc("greeter")
    wait_for("the greeter's processes to exit", lambda: not procs.group_members(old.pid), 10)
    # The kernel frees the listener as the last holder exits; an orphaned worker would hold it for good.
    wait_for(
        "the greeter's port to be free (no orphaned worker holds it)",
        lambda: port_free(HOST, stack.config.ports.greeter),
        10,
    )
    run.produce_until(ROUNDS)
    time.sleep(max(0.0, fault.at + down_s - time.monotonic()))
    respawn(stack, "greeter")
    assert stack.state.proc("greeter").pid != old.pid
    return fault.failures_before


@pytest.mark.timeout(600)
def test_greeter_down_shorter_than_call_timeout(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    run = scenario("greeter kill -9, 5 s down")
    failures_before = greeter_outage(fault_stack, run, 5)
    run.await_recovery(run.faults[0])
    report, result = run.finish(expect_failure=False)
    assert report.ok, "\n".join(report.summary())
    # Within the call timeout the runtime only retries: the job never fails.
    assert result.failures == failures_before, f"job failures {failures_before} -> {result.failures}"


@pytest.mark.timeout(900)
def test_greeter_down_longer_than_call_timeout(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    run = scenario(f"greeter kill -9, {CALL_TIMEOUT_S + 15} s down")
    failures_before = greeter_outage(fault_stack, run, CALL_TIMEOUT_S + 15)
    run.await_recovery(run.faults[0], deadline_s=300)
    report, result = run.finish()
    assert report.ok, "\n".join(report.summary())
    # Past the call timeout the runtime gives up on the calls and restarts the job from its checkpoint.
    assert result.failures > failures_before, f"job failures {failures_before} -> {result.failures}"
