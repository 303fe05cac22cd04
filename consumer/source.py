"""The Kafka side of the consumer: a read_committed consumer assigned every partition of one topic."""

import uuid
from collections.abc import Mapping
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

# Only committed transactions: the egress writes greetings in transactions that a failure aborts, and
# aborted attempts read as duplicates. No offset commits: every run reads on its own terms.
CONSUMER_GUARANTEES: Final = {"isolation.level": "read_committed", "enable.auto.commit": "false"}
_METADATA_TIMEOUT: Final = 10.0


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
