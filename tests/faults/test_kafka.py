"""kill -9 of the Kafka broker mid-run, restarted after a few seconds. The egress cannot commit while the
broker is away: it waits up to 60 s for EndTxn, then the job would restart and abort its open transactions.
The rest of the input is produced only once the broker is back. Measured: with the broker back within 5 s
the job does not restart at all (the 60 s EndTxn wait never runs out), nothing is aborted, and the greetings
in flight commit once the broker is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from stack import procs
from stack.config import HOST
from stack.faults import kill, respawn
from stack.local import LocalStack
from stack.readiness import port_free
from tests.support.waiting import wait_for

from .schedule import ROUNDS, Scenario

pytestmark = pytest.mark.e2e

DOWN_S = 5


@pytest.mark.timeout(900)
def test_kafka_broker_killed(fault_stack: LocalStack, scenario: Callable[[str], Scenario]) -> None:
    run = scenario(f"kafka kill -9, {DOWN_S} s down")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(2 * ROUNDS // 3)
    old = fault_stack.state.proc("kafka")
    fault = run.strike(f"kill -9 kafka, {DOWN_S} s down", lambda: kill(fault_stack, "kafka"))
    wait_for("the broker to exit", lambda: not procs.is_running(old), 10)
    assert port_free(HOST, fault_stack.config.ports.kafka), "the broker's port still answers after kill -9"
    time.sleep(DOWN_S)
    respawn(fault_stack, "kafka")
    assert fault_stack.state.proc("kafka").pid != old.pid
    run.produce_until(ROUNDS)
    run.await_recovery(fault, deadline_s=300)

    report, result = run.finish(deadline_s=300, expect_failure=False)
    assert report.ok, "\n".join(report.summary())
    # The broker really was away: nothing can commit without it, so the first commit after the kill came no
    # sooner than its return. (A 5 s outage restarts nothing and aborts nothing: measured, reported, not asserted;
    # the producers reconnect and the open transactions commit once the broker is back.)
    assert result.first_commit_s[0] is not None and result.first_commit_s[0] >= DOWN_S, result.first_commit_s
