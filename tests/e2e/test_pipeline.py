"""End to end: names -> Kafka -> StateFun runtime -> greeter -> Kafka greetings, exactly once, in order."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from greeter.greeting import compute_greeting
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse
from stack.config import EGRESS_TOPIC, INGRESS_TOPIC
from stack.local import LocalStack

pytestmark = pytest.mark.e2e

UNICODE_NAMES = ["Zoë", "José", "Łukasz", "李雷", "Ἀθηνᾶ", "Ørjan 😀"]
PER_NAME = 20


def _names(token: str) -> list[str]:
    """50 names, unique to this test run so tests sharing the session's stack do not mix."""
    plain = [f"user-{i:02d}" for i in range(50 - len(UNICODE_NAMES))]
    return [f"{name}-{token}" for name in plain + UNICODE_NAMES]


def _produce(bootstrap: str, names: list[str], rounds: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    for _ in range(rounds):  # round-robin, so every name's n-th request comes before its (n+1)-th
        for name in names:
            value = GreetRequest(name=name).SerializeToString()
            producer.produce(INGRESS_TOPIC, key=name.encode("utf-8"), value=value, on_delivery=delivered)
            producer.poll(0)
    assert producer.flush(30) == 0, "records still queued after 30 s"
    assert not errors, errors[:5]


def _read_greetings(
    bootstrap: str, names: set[str], expected: int, deadline_s: float, settle_s: float
) -> dict[str, list[str]]:
    """read_committed greetings for `names` until `expected` arrived, then `settle_s` more to catch extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([EGRESS_TOPIC])
    got: dict[str, list[str]] = defaultdict(list)
    count = 0
    deadline = time.monotonic() + deadline_s
    settle_until: float | None = None
    try:
        while time.monotonic() < (settle_until or deadline):
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key = (message.key() or b"").decode("utf-8")
            if key not in names:
                continue  # another test's
            response = GreetResponse.FromString(message.value() or b"")
            assert response.name == key, f"greeting for {response.name!r} under key {key!r}"
            got[key].append(response.greeting)
            count += 1
            if count >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
    finally:
        consumer.close()
    return dict(got)


@pytest.mark.timeout(900)
def test_every_name_gets_the_walkthrough_sequence_exactly_once(stack: LocalStack) -> None:
    names = _names(uuid.uuid4().hex[:8])
    started = time.monotonic()
    _produce(stack.config.bootstrap_servers, names, PER_NAME)
    settle = 3 * stack.config.checkpoint_interval_ms / 1000  # a duplicate would be committed by then
    got = _read_greetings(stack.config.bootstrap_servers, set(names), len(names) * PER_NAME, 120, settle)
    elapsed = time.monotonic() - started

    wrong = {}
    for name in names:
        expected = [compute_greeting(name, n) for n in range(1, PER_NAME + 1)]
        if got.get(name) != expected:
            wrong[name] = got.get(name, [])
    total = sum(len(v) for v in got.values())
    assert not wrong, (
        f"{len(wrong)} of {len(names)} names wrong after {elapsed:.1f} s ({total} greetings); "
        f"e.g. {next(iter(wrong.items()))}; logs in {stack.config.run_dir}"
    )
    assert total == len(names) * PER_NAME


def test_status_shows_the_job_its_checkpoints_and_no_lag_once_caught_up(stack: LocalStack) -> None:
    _produce(stack.config.bootstrap_servers, _names(uuid.uuid4().hex[:8])[:5], 2)
    deadline = time.monotonic() + 60
    while True:
        status = stack.status()
        caught_up = status.lag is not None and status.lag.committed and status.lag.total == 0
        if caught_up or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status.healthy, status
    assert status.job_state == "RUNNING" and status.checkpoint is not None
    assert caught_up, f"group greeter still lags on names: {status.lag}"
    assert stack.restart_count() == 0
    checkpoint = stack.latest_checkpoint()
    assert checkpoint is not None and checkpoint.path.startswith("file:" + str(stack.config.checkpoint_dir))
