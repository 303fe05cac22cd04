"""The produce loop: names round-robin into the topic, paced, until the count, a stop request or a fatal error.

Delivery reports arrive through poll(), so the loop polls after every record and while it waits: librdkafka's
queue holds 100k records and produce() raises BufferError once it is full.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from clitools.progress import Progress
from clitools.signals import StopFlag
from protos.generated.greeter_pb2 import GreetRequest

# The longest any blocking call waits, so a stop request is seen within this time.
POLL_SLICE: Final = 0.1
# Pacing waits shorter than this are not worth a poll (librdkafka rounds timeouts down to milliseconds).
_MIN_WAIT: Final = 0.001


class KafkaProducer(Protocol):
    """The part of confluent_kafka.Producer the loop uses."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        """Queue one record; BufferError when the local queue is full."""

    def poll(self, timeout: float) -> int:
        """Serve delivery reports, waiting up to `timeout` seconds for one; returns how many were served."""

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for outstanding deliveries; returns how many are still outstanding."""


@dataclass
class Totals:
    """The run's counts, updated by the producer's callbacks (which poll and flush serve)."""

    sent: int = 0  # handed to the producer
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    fatal_error: str | None = None

    @property
    def undelivered(self) -> int:
        """Records with no delivery report yet (after the drain: lost to the flush timeout)."""
        return self.sent - self.delivered - self.failed

    @property
    def ok(self) -> bool:
        """Every record sent was delivered and no fatal error occurred: the run succeeded."""
        return self.failed == 0 and self.undelivered == 0 and self.fatal_error is None

    def on_delivery(self, error: Any, message: Any) -> None:
        """The on_delivery callback of every record: count it delivered or failed, keeping the first error."""
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = str(error)

    def on_error(self, error: Any) -> None:
        """librdkafka's error_cb: only a fatal error (e.g. the idempotent producer lost its sequence) stops us;
        transient ones (broker down) are logged by librdkafka itself and retried.
        """
        if error.fatal() and self.fatal_error is None:
            self.fatal_error = str(error)


def encode_records(names: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) per name, encoded once: the key is the name, the value its GreetRequest."""
    return [(name.encode("utf-8"), GreetRequest(name=name).SerializeToString()) for name in names]


def _render(totals: Totals, started: float, clock: Callable[[], float]) -> str:
    elapsed = max(clock() - started, 1e-9)
    return (
        f"sent {totals.sent}  delivered {totals.delivered}  failed {totals.failed}  {totals.sent / elapsed:,.0f} msg/s"
    )


def produce(
    producer: KafkaProducer,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    totals: Totals,
    *,
    count: int,
    rate: float,
    stop: StopFlag,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send `count` records (0 = until stopped) at `rate` per second (0 = as fast as possible)."""
    started = clock()
    while not stop.requested and totals.fatal_error is None and (count == 0 or totals.sent < count):
        if rate > 0:
            wait = started + totals.sent / rate - clock()
            if wait > _MIN_WAIT:
                producer.poll(min(wait, POLL_SLICE))  # serve delivery reports while pacing
                continue
        key, value = records[totals.sent % len(records)]
        try:
            producer.produce(topic, value=value, key=key, on_delivery=totals.on_delivery)
        except BufferError:
            producer.poll(POLL_SLICE)  # queue full: deliveries make room, then the same record is retried
            continue
        totals.sent += 1
        producer.poll(0)
        progress.update(lambda: _render(totals, started, clock))


def drain(
    producer: KafkaProducer,
    totals: Totals,
    *,
    timeout: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait up to `timeout` seconds for every outstanding delivery report, in slices so signals get through."""
    started = clock()
    deadline = started + timeout
    while totals.fatal_error is None and producer.flush(POLL_SLICE) > 0 and clock() < deadline:
        progress.update(lambda: f"flushing: {totals.undelivered} awaiting delivery")
