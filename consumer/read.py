"""The read loop: batches of records until a stop request, a message count, idleness or a time limit."""

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
    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...


@dataclass(frozen=True)
class Limits:
    max_messages: int = 0  # 0 = no limit
    idle_timeout: float = 0.0  # stop after this long without a record; 0 = never
    duration: float = 0.0  # stop after this long in all; 0 = never
    settle: float | None = None  # once `done` holds, read on this long (late duplicates), then stop; None = never


class Reader:
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
        """Non-empty batches of records (error events handled here); `ended_by` says why it stopped."""
        started = last_record = self._clock()
        while not (ended_by := self._ended(started, last_record)):
            wanted = _BATCH
            if self._limits.max_messages:
                wanted = min(wanted, self._limits.max_messages - self.count)
            records = []
            for message in self._consumer.consume(num_messages=wanted, timeout=POLL_SLICE):
                error = message.error()
                if error is None:
                    records.append(message)
                elif error.fatal():
                    raise KafkaException(error)
                else:  # transient (broker down, ...): librdkafka retries by itself
                    self._on_error(str(error))
            if records:
                self.count += len(records)
                last_record = self._clock()
                yield records
        self.ended_by = ended_by
