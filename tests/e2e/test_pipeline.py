"""End to end: names -> Kafka -> StateFun runtime -> greeter -> Kafka greetings, exactly once, in order."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from consumer.reading.topics import CONSUMER_GUARANTEES, read_to_end
from protos.generated.greeter_pb2 import GreetResponse
from stack.local import LocalStack

from .kafka_io import count_partitions, produce, read, read_greetings, requests, unique_names

pytestmark = pytest.mark.e2e

PER_NAME = 20


def settle_seconds(stack: LocalStack) -> float:
    return 3 * stack.config.checkpoint_interval_ms / 1000  # a late duplicate would be committed by then


@pytest.mark.timeout(900)
def test_every_name_gets_the_walkthrough_sequence_exactly_once(stack: LocalStack) -> None:
    names = unique_names(50)
    started = time.monotonic()
    produce(stack.config.bootstrap_servers, "names", requests(names, PER_NAME))
    report = read_greetings(stack.config.bootstrap_servers, names, PER_NAME, settle_seconds(stack))
    elapsed = time.monotonic() - started
    assert report.ok, "\n".join([*report.summary(), f"after {elapsed:.1f} s; logs in {stack.config.run_dir}"])
    assert report.records == len(names) * PER_NAME


@pytest.mark.timeout(300)
def test_greetings_are_written_in_kafka_transactions(stack: LocalStack) -> None:
    # Exactly-once silently degrades to no guarantee when checkpointing is off: then the egress writes
    # plain records. Transactional writes leave a commit marker after each transaction, which takes an
    # offset but is never returned to a consumer: so the topic's offsets outnumber its records.
    names = unique_names(10)
    produce(stack.config.bootstrap_servers, "names", requests(names, 3))
    assert read_greetings(stack.config.bootstrap_servers, names, 3, settle_seconds(stack)).ok
    counts = count_partitions(stack.config.bootstrap_servers, "greetings")
    written = {p: c for p, c in counts.items() if c.records}
    assert written, counts
    for partition, count in written.items():
        assert count.offsets > count.records, f"partition {partition}: {count}: no transaction markers"


def test_status_shows_the_job_its_checkpoints_and_no_lag_once_caught_up(stack: LocalStack) -> None:
    produce(stack.config.bootstrap_servers, "names", requests(unique_names(5), 2))
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
    assert stack.failure_count() == 0
    checkpoint = stack.latest_checkpoint()
    assert checkpoint is not None and checkpoint.path.startswith("file:" + str(stack.config.checkpoint_dir))


@pytest.mark.timeout(120)
def test_an_aborted_transaction_on_greetings_is_invisible_to_read_committed(stack: LocalStack) -> None:
    # The proof behind every exactly-once figure: what a transaction wrote and then aborted reaches a
    # read_uncommitted consumer, never a read_committed one (the verifier's and greeter-consumer's isolation).
    bootstrap = stack.config.bootstrap_servers
    names = unique_names(5)
    keys = {name.encode() for name in names}
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"e2e-abort-{names[0]}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for name in names:
        value = GreetResponse(name=name, greeting="aborted").SerializeToString()
        producer.produce("greetings", key=name.encode(), value=value)
    assert producer.flush(30) == 0
    producer.abort_transaction(30)

    uncommitted = read(bootstrap, "greetings", keys, len(names), 60, 1, isolation="read_uncommitted")
    assert sorted(r.key for r in uncommitted) == sorted(keys), "the aborted records were never written"
    # To the end of the topic as it is now, past the abort marker: not one of them.
    committed = read_to_end({"bootstrap.servers": bootstrap, **CONSUMER_GUARANTEES}, "greetings")
    assert [m.key() for m in committed if m.key() in keys] == [], "read_committed saw aborted records"
