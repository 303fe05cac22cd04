"""The Kafka side of the consumer: a read_committed consumer assigned every partition of one topic."""

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

# Only committed transactions: the egress writes greetings in transactions that a failure aborts, and
# aborted attempts read as duplicates. No offset commits: every run reads on its own terms.
CONSUMER_GUARANTEES: Final = {"isolation.level": "read_committed", "enable.auto.commit": "false"}
_METADATA_TIMEOUT: Final = 10.0
_BATCH: Final = 1000


def open_consumer(config: Mapping[str, str], topic: str, *, from_beginning: bool) -> Consumer:
    """A consumer assigned every partition of `topic`, at the start or at the end (the last stable offset).

    Manual assignment, not subscribe(): no rebalance wait and no group state. librdkafka still needs a
    group.id, so each run gets its own unless -X group.id says otherwise.
    """
    consumer = Consumer({"group.id": f"greeter-consumer-{uuid.uuid4().hex}", **config})
    try:
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            reason = metadata.error if metadata is not None else "not in the metadata"
            raise KafkaException(f"topic {topic!r} is not readable: {reason}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, partition, start) for partition in sorted(metadata.partitions)])
    except BaseException:
        consumer.close()
        raise
    return consumer


def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """Where each assigned partition of `topic` ends now (under read_committed: its last stable offset)."""
    return {
        tp.partition: consumer.get_watermark_offsets(tp, timeout=_METADATA_TIMEOUT, cached=False)[1]
        for tp in consumer.assignment()
        if tp.topic == topic
    }


def partitions_behind(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> list[int]:
    """The partitions whose position has not reached `ends` yet."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return [tp.partition for tp in positions if ends[tp.partition] > 0 and tp.offset < ends[tp.partition]]


def read_to_end(config: Mapping[str, str], topic: str, idle_limit_s: float = 30.0) -> Iterator[Any]:
    """Every record of `topic`, from its start to where it ends now. Raises KafkaException when no record
    comes for `idle_limit_s` before the end is reached."""
    consumer = open_consumer(config, topic, from_beginning=True)
    try:
        yield from read_until(consumer, topic, end_offsets(consumer, topic), idle_limit_s)
    finally:
        consumer.close()


def read_until(consumer: Consumer, topic: str, ends: Mapping[int, int], idle_limit_s: float = 30.0) -> Iterator[Any]:
    """Records of `consumer` until every partition of `topic` reached `ends`."""
    last_record = time.monotonic()
    while behind := partitions_behind(consumer, topic, ends):
        if time.monotonic() - last_record > idle_limit_s:
            raise KafkaException(f"{topic}: partitions {behind} did not reach their end within {idle_limit_s:.0f} s")
        for message in records(consumer.consume(_BATCH, 0.5)):
            last_record = time.monotonic()
            yield message


def records(messages: list[Any]) -> list[Any]:
    """The records among `messages`; a fatal error raises, a transient one (librdkafka retries) is dropped."""
    kept = []
    for message in messages:
        error = message.error()
        if error is None:
            kept.append(message)
        elif error.fatal():
            raise KafkaException(error)
    return kept
