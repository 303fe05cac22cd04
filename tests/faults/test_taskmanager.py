"""kill -9 of the TaskManager mid-run, once and twice: the job restarts from its last checkpoint, the open
transactions are aborted, and every name still gets exactly 1..40 in order under read_committed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stack.faults import kill, respawn
from stack.local import LocalStack
from tests.support.stacks import running_stack

from .schedule import ROUNDS, Scenario

pytestmark = pytest.mark.e2e


def kill_taskmanager(stack: LocalStack) -> None:
    kill(stack, "taskmanager")  # SIGKILL to its process group
    respawn(stack, "taskmanager")  # a session cluster restarts the job once a TaskManager registers again


def killed_once(stack: LocalStack, run: Scenario) -> None:
    """kill -9 of the TaskManager mid-transaction under load: exact, the job failed and recovered, and the
    open transaction was aborted."""
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(ROUNDS // 2)  # in flight when the fault strikes: processed, not yet committed
    fault = run.strike_mid_transaction(
        "kill -9 taskmanager", lambda: kill_taskmanager(stack), until_round=2 * ROUNDS // 3
    )
    run.produce_until(ROUNDS)
    run.await_recovery(fault)

    report, result = run.finish()
    assert report.ok, "\n".join(report.summary())
    # The job really failed and recovered (its exception history; see FlinkRest.failure_count).
    assert result.failures > fault.failures_before, f"job failures {fault.failures_before} -> {result.failures}"
    # The greetings the dead TaskManager had written in its open transaction are on the topic, aborted: a
    # read_uncommitted reader counts them, and the read_committed report above, exact, saw none of them
    # (their requests were answered again after the restore, so a visible one would be a duplicate).
    assert result.aborted > 0, f"nothing aborted: {result.read_uncommitted} uncommitted, {result.committed} committed"


@pytest.mark.timeout(600)
def test_taskmanager_killed_once(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    killed_once(fault_stack, scenario("taskmanager kill -9"))


@pytest.mark.timeout(600)
def test_taskmanager_killed_on_the_secured_broker(
    tmp_path: Path, scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    """The same on `--kafka-security sasl-ssl`: the restarted egress's transactional ids, and the aborts of the
    dead ones, are within the runtime's ACLs; requests go in as the generator, greetings are read as the consumer.
    """
    with running_stack(tmp_path / "run", "secured fault stack", mode="cluster", kafka_security="sasl-ssl") as stack:
        killed_once(stack, scenario_on(stack, "taskmanager kill -9, SASL_SSL broker"))


@pytest.mark.timeout(900)
def test_taskmanager_killed_twice(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    run = scenario("taskmanager kill -9 twice")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(ROUNDS // 2)
    first = run.strike("kill -9 taskmanager (1st)", lambda: kill_taskmanager(fault_stack))
    run.produce_until(2 * ROUNDS // 3)
    run.await_recovery(first)
    after_first = run.failures(above=first.failures_before)
    assert after_first > first.failures_before, f"job failures {first.failures_before} -> {after_first}"

    run.ready_to_strike()  # two more completed checkpoints after the recovery
    run.produce_until(5 * ROUNDS // 6)
    second = run.strike("kill -9 taskmanager (2nd)", lambda: kill_taskmanager(fault_stack))
    run.produce_until(ROUNDS)
    run.await_recovery(second)

    report, result = run.finish()
    assert report.ok, "\n".join(report.summary())
    assert result.failures > after_first, f"job failures {after_first} after the 1st kill, {result.failures} at the end"
