"""Producing to and reading from the real broker for end-to-end tests; reading through the consumer's own reader
(consumer/reading/topics.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumer.reading.greetings import decode
from consumer.reading.loop import Limits
from consumer.reading.topics import committed_reader, read_to_end
from consumer.stored_names import StoredNames
from consumer.verify import Report, verify
from protos.generated.greeter_pb2 import GreetRequest
from tests.support.kafka_clients import KafkaTarget, client_settings

UNICODE_NAMES = ["Zoë", "José", "Łukasz", "李雷", "Ἀθηνᾶ", "Ørjan 😀"]


def unique_names(count: int) -> list[str]:
    """`count` names (some unicode) unique to this call, so tests sharing one stack do not mix."""
    token = uuid.uuid4().hex[:8]
    plain = [f"user-{i:03d}" for i in range(max(count - len(UNICODE_NAMES), 0))]
    return [f"{name}-{token}" for name in (plain + UNICODE_NAMES)[:count]]


def produce(kafka: KafkaTarget, topic: str, records: Iterable[tuple[bytes, bytes]], deadline_s: float = 30) -> int:
    """Send (key, value) records with the generator's guarantees; fail unless every one is acknowledged within
    `deadline_s`."""
    producer = Producer(client_settings(kafka, acks="all", **{"enable.idempotence": True, "linger.ms": 5}))
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    sent = 0
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        producer.poll(0)
        sent += 1
    assert producer.flush(deadline_s) == 0, f"records still queued after {deadline_s} s"
    assert not errors, errors[:5]
    return sent


def requests(names: list[str], rounds: int) -> list[tuple[bytes, bytes]]:
    """Round-robin GreetRequests: every name's n-th request comes before its (n+1)-th."""
    return [(name.encode(), GreetRequest(name=name).SerializeToString()) for _ in range(rounds) for name in names]


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    partition: int
    offset: int


def _fail(error: str) -> None:
    raise AssertionError(f"Kafka error event: {error}")


def read(
    kafka: KafkaTarget,
    topic: str,
    keys: set[bytes],
    expected: int,
    deadline_s: float,
    settle_s: float,
    isolation: str = "read_committed",
) -> list[Record]:
    """Records of `topic` whose key is in `keys`, from the start, until `expected` arrived and then
    `settle_s` more (to catch late extras), or until the deadline (the settle window may run past it). Any error
    event fails the test."""
    got: list[Record] = []
    with committed_reader(
        client_settings(kafka, **{"isolation.level": isolation}),
        topic,
        Limits(duration=deadline_s + settle_s, settle=settle_s),
        from_beginning=True,
        on_error=_fail,
        done=lambda: len(got) >= expected,
    ) as reader:
        for batch in reader.batches():
            for message in batch:
                key = message.key() or b""
                if key in keys:
                    got.append(Record(key, message.value() or b"", message.partition(), message.offset()))
    return got


def greetings(records: list[Record]) -> list[tuple[str, str]]:
    """The (name, greeting) pairs of `records`; a record that is no greeting fails the test (InvalidRecord)."""
    pairs = []
    for record in records:
        greeting = decode(record.key, record.value, record.partition, record.offset, None)
        pairs.append((greeting.name, greeting.greeting))
    return pairs


def stored_names(kafka: KafkaTarget, keys: set[bytes]) -> StoredNames:
    """What must come out for `keys`, worked out from `names` as stored (the verifier's trusted input)."""
    stored = StoredNames()
    for message in read_to_end(client_settings(kafka), "names"):
        if message.key() in keys:
            stored.add(message.key(), message.value(), f"names {message.partition()}:{message.offset()}")
    return stored


def read_greetings(
    kafka: KafkaTarget, names: list[str], per_name: int, settle_s: float, deadline_s: float = 180
) -> Report:
    """Every committed greeting for `names`, checked against `names` as stored: exactly 1..k each, in order,
    right strings. `per_name` is what the test produced; the topic must agree before it counts as expected."""
    expected = stored_names(kafka, {n.encode() for n in names}).greetings
    assert expected == dict.fromkeys(names, per_name), "names as stored is not what the test produced"
    records = read(kafka, "greetings", {n.encode() for n in names}, sum(expected.values()), deadline_s, settle_s)
    return verify(greetings(records), expected)


@dataclass(frozen=True)
class PartitionCount:
    offsets: int  # high watermark - low watermark: records and transaction markers
    records: int  # what a read_uncommitted consumer is handed: data records only


def count_partitions(kafka: KafkaTarget, topic: str) -> dict[int, PartitionCount]:
    """Read every partition of `topic` to its end (read_uncommitted) and compare records with offsets."""
    consumer = Consumer(
        client_settings(kafka, **{"group.id": f"e2e-{uuid.uuid4().hex}", "isolation.level": "read_uncommitted"})
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _high) in marks.items()])
        records = dict.fromkeys(marks, 0)
        deadline = time.monotonic() + 60
        while not all(
            tp.offset >= marks[tp.partition][1]
            for tp in consumer.position([TopicPartition(topic, p) for p in marks])
            if marks[tp.partition][1] > marks[tp.partition][0]
        ):
            # An undercount would pass for commit markers in `offsets > records`: never stop short quietly.
            assert time.monotonic() < deadline, f"{topic} not read to its end in 60 s: {records} of {marks}"
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                records[message.partition()] += 1
        return {p: PartitionCount(high - low, records[p]) for p, (low, high) in marks.items()}
    finally:
        consumer.close()
