"""HTTP faults between the runtime and the greeter, through a fault proxy (tests/faults/http_proxy.py): slow
replies, bursts of 500s, a 200 with the wrong content type, and connections reset after the greeter answered.

Each stays within module.yaml's call timeout (1 min), so the runtime retries (it logs a
`Retry #` line per failed attempt) and the job never fails; every name still gets exactly 1..40.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack.config import Ports
from stack.local import LocalStack
from stack.logs import delivery_retries
from tests.support.stacks import running_stack
from tests.support.waiting import wait_for

from .http_proxy import FaultKind, FaultProxy
from .schedule import ROUNDS, Scenario

pytestmark = pytest.mark.e2e

SPOILED_REQUESTS = 10  # per burst: few enough that no single call's retries outlast the call timeout
DELAY_S = 3.0
DELAY_WINDOW_S = 10.0


@pytest.fixture
def proxied_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, FaultProxy]]:
    # The single-mode runtime (the quick start's): these faults strike between the runtime and the greeter.
    ports = Ports.free()  # the proxy needs the greeter's port before the stack starts
    with (
        FaultProxy(ports.greeter) as proxy,
        running_stack(
            tmp_path / "run", "fault stack", ports=ports, seen_count_ttl=0, endpoint_port=proxy.port
        ) as stack,
    ):
        yield stack, proxy


@pytest.mark.timeout(900)
def test_http_faults_are_retried_without_loss(
    proxied_stack: tuple[LocalStack, FaultProxy], scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    stack, proxy = proxied_stack
    plan = proxy.plan
    run = scenario_on(stack, "http faults through a proxy")
    failures_before = run.failures()
    arms: list[tuple[str, Callable[[], None]]] = [
        (
            f"every reply held {DELAY_S:.0f} s for {DELAY_WINDOW_S:.0f} s",
            lambda: plan.arm(FaultKind.DELAY, delay_s=DELAY_S, for_s=DELAY_WINDOW_S),
        ),
        (f"{SPOILED_REQUESTS} replies of 500", lambda: plan.arm(FaultKind.ERROR, count=SPOILED_REQUESTS)),
        (
            f"{SPOILED_REQUESTS} replies of 200 text/html",
            lambda: plan.arm(FaultKind.WRONG_TYPE, count=SPOILED_REQUESTS),
        ),
        (
            f"{SPOILED_REQUESTS} connections reset after the greeter answered",
            lambda: plan.arm(FaultKind.RESET, count=SPOILED_REQUESTS),
        ),
    ]
    # All four strike after the first third of the input and leave the last third to come.
    per_fault = (ROUNDS // 3) // len(arms)
    run.produce_until(ROUNDS // 3)
    retries: dict[str, int] = {}
    for label, arm in arms:
        run.ready_to_strike()
        retries_before = delivery_retries(stack.config)
        fault = run.strike(label, arm)
        run.produce_until(run.next_round + per_fault - 1)  # the requests the fault spoils
        wait_for(f"the proxy to spend its fault ({label})", lambda: not plan.armed, 120)
        run.produce_until(run.next_round + 1)
        run.await_recovery(fault)
        retries[label] = delivery_retries(stack.config) - retries_before
    assert run.next_round <= ROUNDS - ROUNDS // 3
    run.produce_until(ROUNDS)

    report, result = run.finish(
        expect_failure=False, injected=dict(plan.injected), runtime_retries=retries, forwarded=plan.forwarded
    )
    assert report.ok, "\n".join(report.summary())
    # Every fault struck: the proxy spoiled the requests it was armed for ...
    assert plan.injected[FaultKind.ERROR] == SPOILED_REQUESTS
    assert plan.injected[FaultKind.WRONG_TYPE] == SPOILED_REQUESTS
    assert plan.injected[FaultKind.RESET] == SPOILED_REQUESTS
    assert plan.injected[FaultKind.DELAY] > 0
    # ... and the runtime retried each failed attempt (a delay is no failure: nothing to retry).
    for label, count in list(retries.items())[1:]:
        assert count >= SPOILED_REQUESTS, f"{label}: {count} retries logged"
    # Within the call timeout the runtime's retries absorb it all: the job never failed.
    assert result.failures == failures_before, f"job failures {failures_before} -> {result.failures}"
