"""Day-2 operations while requests keep arriving: `greeter-stack rescale` 1 -> 2 -> 1 on the cluster (TaskManagers
started and stopped) and three times in a row in the default single mode (its one JVM exits with the cancelled job
and starts again), each step cancelling the job with a savepoint and resuming it at the new parallelism; and
`greeter-stack upgrade-greeter` (gunicorn replaced in place). Every name still gets exactly 1..k in order under
read_committed, with no job failure; the upgrade also with no failed delivery."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stack import daemons, procs
from stack.local import LocalStack
from stack.logs import delivery_retries
from stack.operations import rescale, upgrade_greeter
from tests.support.stacks import running_stack
from tests.support.waiting import wait_for

from .schedule import Fault, Scenario

pytestmark = pytest.mark.e2e

FIRST_ROUNDS = 20  # before the first rescale
ROUNDS_PER_STEP = 40  # 50 names: 2,000 requests per rescale, 1,000 of them after it
ROUND_EVERY_S = 0.4  # 125 requests/s while a rescale runs


@contextmanager
def steady_load(run: Scenario, until_round: int) -> Iterator[None]:
    """Produce one round every ROUND_EVERY_S up to `until_round` in the background, from before the body starts
    until after it ends (the thread finishes its rounds on exit)."""
    first_round = run.next_round
    thread = threading.Thread(target=lambda: _rounds(run, until_round), name="steady load", daemon=True)
    thread.start()
    # The load is running before the operation starts: its first round is in Kafka.
    wait_for("the steady load's first round", lambda: run.next_round > first_round, 60, every=0.05)
    try:
        yield
    finally:
        thread.join(timeout=ROUND_EVERY_S * until_round + 60)


def _rounds(run: Scenario, until_round: int) -> None:
    while run.next_round < until_round:
        run.produce_until(run.next_round + 1)
        time.sleep(ROUND_EVERY_S)


def timed(operation: Callable[[], object], took: list[float]) -> Callable[[], None]:
    """`operation` as a fault action that appends its duration in seconds to `took`."""

    def action() -> None:
        start = time.monotonic()
        operation()
        took.append(round(time.monotonic() - start, 1))

    return action


def longest_stall(run: Scenario, fault: Fault, recovered_s: float) -> float:
    """The longest gap between committed greetings, from 5 s before the operation until it had recovered."""
    arrivals = sorted(s.at for s in run.watcher.seen() if fault.at - 5 <= s.at <= fault.at + recovered_s)
    return round(max((b - a for a, b in itertools.pairwise(arrivals)), default=recovered_s), 1)


def assert_runs_on(stack: LocalStack, parallelism: int) -> None:
    job = stack.job_id or ""
    assert stack.rest.parallelism(job)[0] == parallelism
    assert stack.rest.job_running(job) is None
    if stack.config.mode == "single":  # one JVM, its slots the parallelism
        assert [p.name for p in stack.running() if p.name in daemons.runtime_names(stack.config)] == ["runtime"]
        assert [tm.slots for tm in stack.rest.taskmanagers()] == [parallelism]
        return
    running = sorted(p.name for p in stack.running() if p.name.startswith(daemons.TASKMANAGER))
    assert running == sorted(daemons.taskmanager_names(parallelism))
    assert len(stack.rest.taskmanagers()) == parallelism


def rescaled_under_steady_load(stack: LocalStack, label: str, steps: tuple[int, ...]) -> None:
    """Rescale to each of `steps` in turn under a steady load; exactly once in order, no job failure."""
    rounds = FIRST_ROUNDS + ROUNDS_PER_STEP * len(steps) + FIRST_ROUNDS
    run = Scenario(stack, label, rounds=rounds)
    took: list[float] = []
    stalls: list[float] = []
    with run:
        run.produce_until(FIRST_ROUNDS)
        run.ready_to_strike()
        for step, parallelism in enumerate(steps, start=1):
            with steady_load(run, FIRST_ROUNDS + ROUNDS_PER_STEP * step):
                fault = run.strike(f"rescale to {parallelism}", timed(lambda p=parallelism: rescale(stack, p), took))
                assert_runs_on(stack, parallelism)
            stalls.append(longest_stall(run, fault, run.await_recovery(fault)))
            run.ready_to_strike()
        run.produce_until(rounds)
        report, result = run.finish(expect_failure=False, rescale_s=took, longest_stall_s=stalls)
    assert report.ok, "\n".join(report.summary())
    # Each step is a new job resumed from a savepoint, not a failure and restart of the old one.
    assert result.failures == 0, f"the rescaled job failed {result.failures} times"


@pytest.mark.timeout(900)
def test_rescaled_one_two_one_under_steady_load(fault_stack: LocalStack) -> None:
    rescaled_under_steady_load(fault_stack, "rescale 1 -> 2 -> 1", (2, 1))


@pytest.mark.timeout(1500)
def test_rescaled_one_two_one_three_times_in_the_default_single_mode(tmp_path: Path) -> None:
    with running_stack(tmp_path / "run", "single stack", mode="single") as stack:
        rescaled_under_steady_load(stack, "single mode: rescale (1 -> 2 -> 1) x 3", (2, 1) * 3)


@pytest.mark.timeout(600)
def test_the_greeter_upgraded_under_steady_load_fails_no_delivery(fault_stack: LocalStack) -> None:
    rounds = 60
    run = Scenario(fault_stack, "greeter upgraded in place", rounds=rounds)
    old = fault_stack.state.proc("greeter")
    old_workers = set(procs.children(old.pid))
    with run:
        run.produce_until(rounds // 6)
        run.ready_to_strike()
        retries_before = delivery_retries(fault_stack.config)
        took: list[float] = []
        with steady_load(run, 5 * rounds // 6):
            fault = run.strike("upgrade-greeter", timed(lambda: upgrade_greeter(fault_stack), took))
        stall = longest_stall(run, fault, run.await_recovery(fault))
        run.produce_until(rounds)
        failed_deliveries = delivery_retries(fault_stack.config) - retries_before
        report, result = run.finish(
            expect_failure=False, upgrade_s=took, longest_stall_s=stall, failed_deliveries=failed_deliveries
        )
    assert report.ok, "\n".join(report.summary())
    assert failed_deliveries == 0, f"the runtime retried {failed_deliveries} calls to the greeter during the upgrade"
    assert result.failures == 0
    new = fault_stack.state.proc("greeter")
    assert new.pid != old.pid and not procs.is_running(old), "a new gunicorn master replaced the old one"
    assert procs.is_running(new) and (fault_stack.config.run_dir / "greeter.pid").read_text().strip() == str(new.pid)
    new_workers = set(procs.children(new.pid))
    assert len(new_workers) == fault_stack.config.greeter_workers and not new_workers & old_workers
