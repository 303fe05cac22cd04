"""The one read loop of the consumer, and its one error policy.

Every topic the consumer reads goes through `Reader.batches()`: `greetings` until a stop request, a message
count, idleness, a time limit or the end of the settle window; `names` and `names-dlq` to their end (through
`topics.read_until`, which says "done" once every partition is caught up). Every batch a consumer hands over
goes through `records_of`, the error policy:

- a fatal error (the client cannot go on: fenced, unsupported, ...) raises KafkaException, and the command
  exits 1 with the error on stderr;
- any other error event (a broker down, a timed-out request, ...) is passed to `on_error` and the read goes
  on: librdkafka retries by itself, and a read that never recovers ends by its own limit.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from confluent_kafka import KafkaException

from clitools.signals import StopFlag

# The longest consume() blocks, so a stop request or a deadline is seen within this time.
POLL_SLICE: Final = 0.1
_BATCH: Final = 500


class KafkaConsumer(Protocol):
    """The part of confluent_kafka.Consumer the loop uses (a fake in the unit tests)."""

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        """Up to `num_messages` messages (records and error events), waiting up to `timeout` seconds."""
        ...


def records_of(messages: list[Any], on_error: Callable[[str], None]) -> list[Any]:
    """The records among `messages`: a fatal error raises KafkaException, any other error event goes to
    `on_error` and is skipped (librdkafka retries by itself).
    """
    kept = []
    for message in messages:
        error = message.error()
        if error is None:
            kept.append(message)
        elif error.fatal():
            raise KafkaException(error)
        else:
            on_error(str(error))
    return kept


@dataclass(frozen=True)
class Limits:
    """When a read ends; a stop request always ends it."""

    max_messages: int = 0  # 0 = no limit
    idle_timeout: float = 0.0  # stop after this long without a record; 0 = never
    duration: float = 0.0  # stop after this long in all; 0 = never
    settle: float | None = None  # once `done` holds, read on this long (late duplicates), then stop; None = never


class Reader:
    """Reads `consumer` in batches within `limits`; `count` is the records handed out, `ended_by` says why
    the read ended ("stop signal", "--max-messages", "--duration", "--timeout" or "--settle").
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        limits: Limits,
        stop: StopFlag,
        on_error: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        done: Callable[[], bool] = lambda: False,
    ) -> None:
        self._consumer = consumer
        self._limits = limits
        self._stop = stop
        self._on_error = on_error
        self._clock = clock
        self._done = done
        self._settle_until: float | None = None
        self.count = 0
        self.ended_by = ""

    def _ended(self, started: float, last_record: float) -> str:
        limits, now = self._limits, self._clock()
        if self._stop.requested:
            return "stop signal"
        if limits.max_messages and self.count >= limits.max_messages:
            return "--max-messages"
        if limits.duration and now - started >= limits.duration:
            return "--duration"
        if limits.idle_timeout and now - last_record >= limits.idle_timeout:
            return "--timeout"
        if limits.settle is not None and self._settle_until is None and self._done():
            self._settle_until = now + limits.settle
        if self._settle_until is not None and now >= self._settle_until:
            return "--settle"
        return ""

    def batches(self) -> Iterator[list[Any]]:
        """Non-empty batches of records, error events handled by `records_of`; `ended_by` says why it stopped."""
        started = last_record = self._clock()
        while not (ended_by := self._ended(started, last_record)):
            wanted = _BATCH
            if self._limits.max_messages:
                wanted = min(wanted, self._limits.max_messages - self.count)
            records = records_of(self._consumer.consume(num_messages=wanted, timeout=POLL_SLICE), self._on_error)
            if records:
                self.count += len(records)
                last_record = self._clock()
                yield records
        self.ended_by = ended_by
