"""Each fault test starts its own stack on free ports in its own temporary run folder (under pytest's basetemp,
so the logs stay for a look), and always stops it, whatever happens. Each test prints its duration and a
`[fault result]` line (the figures in RELIABILITY.md). `fault_stack` runs the cluster mode (Kafka, greeter,
JobManager, TaskManager), the topology of the container and Kubernetes stacks, whose processes the tests kill
one by one; the single-mode runtime has its own tests (test_single_mode.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack.config import StackConfig
from stack.local import LocalStack
from tests.support.stacks import running_stack, stack_config

from .schedule import Scenario


def fault_config(run_dir: Path, seen_count_ttl: int | None = 0) -> StackConfig:
    """For a test that starts and restarts its stack itself, in the mode `fault_stack` runs."""
    return stack_config(run_dir, seen_count_ttl=seen_count_ttl, mode="cluster")


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path / "run", "fault stack", mode="cluster") as local:
        yield local


@pytest.fixture(autouse=True)
def _print_duration(request: pytest.FixtureRequest) -> Iterator[None]:
    start = time.monotonic()
    yield
    print(f"\n[fault duration] {request.node.name}: {time.monotonic() - start:.0f} s", flush=True)


@pytest.fixture
def scenario_on() -> Iterator[Callable[[LocalStack, str], Scenario]]:
    """Makes a test's Scenario on a stack; stops its watcher thread when the test ends, passed or failed."""
    made: list[Scenario] = []

    def make(stack: LocalStack, name: str) -> Scenario:
        made.append(Scenario(stack, name))
        return made[-1]

    try:
        yield make
    finally:
        for run in made:
            run.watcher.close()


@pytest.fixture
def scenario(fault_stack: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]) -> Callable[[str], Scenario]:
    """A Scenario on the test's own `fault_stack`."""
    return lambda name: scenario_on(fault_stack, name)


@pytest.fixture
def stacks() -> Iterator[list[LocalStack]]:
    """The stacks a test brings up one after the other on one run folder (restarts, mode or setting switches);
    whichever is still up when the test ends is stopped."""
    started: list[LocalStack] = []
    try:
        yield started
    finally:
        for local in reversed(started):
            local.down()
