"""The Kafka side of the consumer: a read_committed consumer assigned every partition of one topic.

`committed_reader` is the one reader of committed greetings: `greeter-consumer`'s subcommands, bench/load.py and
the end-to-end tests (tests/e2e/kafka_io.py) read `greetings` through it.
"""

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from clitools.kafka_security import AccessWatch
from clitools.signals import StopFlag

from .loop import Limits, Reader

# Only committed transactions: the egress writes greetings in transactions that a failure aborts, and
# aborted attempts read as duplicates. No offset commits: every run reads on its own terms.
CONSUMER_GUARANTEES: Final = {"isolation.level": "read_committed", "enable.auto.commit": "false"}
_METADATA_TIMEOUT: Final = 10.0


def _ignore(_text: str) -> None:
    """The default for a transient error event: librdkafka retries by itself."""


def open_consumer(config: Mapping[str, str], topic: str, *, from_beginning: bool) -> Consumer:
    """A consumer assigned every partition of `topic`, at the start or at the end (the last stable offset),
    with CONSUMER_GUARANTEES unless `config` says otherwise (a test that reads what aborted transactions left).

    Manual assignment, not subscribe(): no rebalance wait and no group state. librdkafka still needs a
    group.id, so each run gets its own unless -X group.id says otherwise. A broker that refuses the client
    (credentials, TLS) raises KafkaAccessRefused at once, and later from the read; a topic missing from the
    metadata raises KafkaException.
    """
    watch = AccessWatch(config.get("security.protocol", "PLAINTEXT"), config.get("ssl.ca.location"))
    # log_level 3: librdkafka's errors, not its info lines (a refused client: one per 50 ms).
    consumer = Consumer(
        {
            "group.id": f"greeter-consumer-{uuid.uuid4().hex}",
            "log_level": 3,
            **CONSUMER_GUARANTEES,
            **config,
            "error_cb": watch.refuse,
        }
    )
    try:
        watch.first_contact(consumer, config["bootstrap.servers"])
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


@contextmanager
def committed_reader(
    config: Mapping[str, str],
    topic: str,
    limits: Limits,
    *,
    from_beginning: bool,
    stop: StopFlag | None = None,
    on_error: Callable[[str], None] = _ignore,
    done: Callable[[], bool] = lambda: False,
) -> Iterator[Reader]:
    """A Reader of every partition of `topic` (`open_consumer`: read_committed unless `config` says otherwise)
    within `limits`, whose settle window starts once `done` holds; `stop` ends it early. The consumer is closed
    on the way out. Raises as `open_consumer` does; the read raises and reports errors as `loop.records_of` does.
    """
    consumer = open_consumer(config, topic, from_beginning=from_beginning)
    try:
        yield Reader(consumer, limits, StopFlag() if stop is None else stop, on_error, done=done)
    finally:
        consumer.close()


def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """Where each assigned partition of `topic` ends now (under read_committed: its last stable offset)."""
    return {
        tp.partition: consumer.get_watermark_offsets(tp, timeout=_METADATA_TIMEOUT, cached=False)[1]
        for tp in consumer.assignment()
        if tp.topic == topic
    }


def topic_ends(config: Mapping[str, str], topic: str) -> dict[int, int]:
    """Where each partition of `topic` ends now, from a consumer opened for that alone."""
    consumer = open_consumer(config, topic, from_beginning=False)
    try:
        return end_offsets(consumer, topic)
    finally:
        consumer.close()


def partitions_behind(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> list[int]:
    """The partitions whose position has not reached `ends` yet."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return [tp.partition for tp in positions if ends[tp.partition] > 0 and tp.offset < ends[tp.partition]]


def read_to_end(
    config: Mapping[str, str],
    topic: str,
    idle_limit_s: float = 30.0,
    on_error: Callable[[str], None] = _ignore,
) -> Iterator[Any]:
    """Every record of `topic`, from its start to where it ends now. Raises KafkaException when no record
    comes for `idle_limit_s` before the end is reached; error events as in `loop.records_of`.
    """
    consumer = open_consumer(config, topic, from_beginning=True)
    try:
        yield from read_until(consumer, topic, end_offsets(consumer, topic), idle_limit_s, on_error)
    finally:
        consumer.close()


def read_until(
    consumer: Consumer,
    topic: str,
    ends: Mapping[int, int],
    idle_limit_s: float = 30.0,
    on_error: Callable[[str], None] = _ignore,
) -> Iterator[Any]:
    """Records of `consumer` until every partition of `topic` reached `ends`: the consumer's one read loop,
    done once nothing is behind. Not ended by a stop signal: what it reads is the base of a check.
    """
    reader = Reader(
        consumer,
        Limits(idle_timeout=idle_limit_s, settle=0.0),
        StopFlag(),
        on_error,
        done=lambda: not partitions_behind(consumer, topic, ends),
    )
    for batch in reader.batches():
        yield from batch
    if reader.ended_by != "--settle":
        behind = partitions_behind(consumer, topic, ends)
        raise KafkaException(f"{topic}: partitions {behind} did not reach their end within {idle_limit_s:.0f} s")
