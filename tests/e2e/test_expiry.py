"""GREETER_SEEN_COUNT_TTL on the real runtime: a user idle past the TTL is welcomed again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from greeter.function.greeting import compute_greeting
from stack.local import LocalStack
from tests.support.stacks import running_stack

from .kafka_io import greetings, produce, read, requests, unique_names

pytestmark = pytest.mark.e2e

# Long enough that a second call made right after the first greeting is committed (a checkpoint or two)
# is well inside it; short enough for a test.
TTL_SECONDS = 10


@pytest.fixture(scope="module")
def ttl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("ttl-stack-run"), "ttl stack", seen_count_ttl=TTL_SECONDS) as local:
        yield local


def greet_and_wait(stack: LocalStack, name: str, seen_before: int) -> tuple[str, float]:
    """Send one request for `name`; return its committed greeting and when it was seen."""
    bootstrap = stack.config.bootstrap_servers
    produce(bootstrap, "names", requests([name], 1))
    records = read(bootstrap, "greetings", {name.encode()}, seen_before + 1, deadline_s=60, settle_s=0)
    pairs = greetings(records)
    assert len(pairs) == seen_before + 1, pairs
    return pairs[-1][1], time.monotonic()


@pytest.mark.timeout(300)
def test_a_user_back_before_the_ttl_is_counted_one_back_after_is_welcomed_again(ttl_stack: LocalStack) -> None:
    returning, idle = unique_names(2)
    assert greet_and_wait(ttl_stack, returning, 0)[0] == compute_greeting(returning, 1)
    _, idle_greeted_at = greet_and_wait(ttl_stack, idle, 0)

    assert greet_and_wait(ttl_stack, returning, 1)[0] == compute_greeting(returning, 2)

    time.sleep(max(0.0, idle_greeted_at + TTL_SECONDS + 3 - time.monotonic()))
    greeting, _ = greet_and_wait(ttl_stack, idle, 1)
    assert greeting == compute_greeting(idle, 1), "a user idle past the TTL must be forgotten"
