"""Load and measurement, the same for every system under test: GreetRequests produced to the system's input
topic, its greetings read back under read_committed from its output topic, the CPU and peak RSS of its
processes over the window, and every name's greetings verified 1..k.

Two measures: `throughput` (a backlog produced as fast as Kafka takes it; committed greetings/s, first to last
greeting and from the first record sent) and `latency` (a fixed rate; produce-to-committed-visible delay).
Greetings become visible a transaction at a time (one per checkpoint or commit interval), so first to last is
None when a backlog became visible all at once, and means something only over many intervals. CPU and peak RSS
cover the window from the first record sent to the last greeting read; peak RSS is reset at its start.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer

from bench.procstats import cpu_seconds, peak_rss_mb, reset_peak_rss
from clitools.signals import StopFlag
from consumer.reading.greetings import InvalidRecord, from_message
from consumer.reading.loop import Limits, Reader
from consumer.reading.topics import committed_reader
from consumer.verify import Report, verify
from protos.generated.greeter_pb2 import GreetRequest


@dataclass(frozen=True)
class Target:
    """A system under test, as the load sees it."""

    name: str
    input_topic: str
    output_topic: str
    own: frozenset[str]  # its processes (Kafka included), by name in `processes()`
    # librdkafka settings of the load's producer and of its reader: the broker's address, and on a secured broker
    # the generator's and the consumer's logins (stack/kafka_auth.py client_settings)
    writer: Mapping[str, str]
    reader: Mapping[str, str]
    processes: Callable[[], Mapping[str, int]]  # every process running (name -> pid): its own and bystanders
    # (messages, HTTP requests) the runtime sent the function so far: StateFun's batching, from greeter metrics
    batches: Callable[[], tuple[float, float]] | None = None
    settle_s: float = 6.0  # read on this long after the last greeting: late duplicates would show up by then
    # run before each measure: puts the system's function server in place when two take turns (bench/floor.py)
    prepare: Callable[[], None] | None = None


class GreetingReader(threading.Thread):
    """Reads committed greetings with `reader` in a thread, noting when each became visible, until `finish`."""

    def __init__(self, reader: Reader, stop: StopFlag) -> None:
        super().__init__(daemon=True)
        self._reader = reader
        self._stopping = stop  # not `_stop`: a Thread method of that name
        self.seen: list[tuple[float, str, str]] = []  # (time visible, name, greeting)
        self.invalid: list[str] = []  # records that are no greeting (one keyed by another name, say): what is wrong
        self.error: KafkaException | None = None  # the fatal Kafka error that ended the read early

    def run(self) -> None:
        try:
            for batch in self._reader.batches():
                now = time.monotonic()
                for message in batch:
                    try:
                        greeting = from_message(message)
                    except InvalidRecord as invalid:
                        self.invalid.append(str(invalid))
                        continue
                    self.seen.append((now, greeting.name, greeting.greeting))
        except KafkaException as error:
            self.error = error

    def wait_for(self, count: int, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while len(self.seen) < count and time.monotonic() < end and self.is_alive():
            time.sleep(0.05)

    def finish(self) -> list[tuple[float, str, str]]:
        self._stopping.request()
        self.join()
        return self.seen


@contextmanager
def reading(target: Target) -> Iterator[GreetingReader]:
    """A reader of the target's greetings from the end of its output topic, assigned before it is handed out
    and stopped whatever happens.
    """
    stop = StopFlag()
    # No limit but the stop: the measures wait for the greetings they expect, each with its own deadline.
    with committed_reader(target.reader, target.output_topic, Limits(), from_beginning=False, stop=stop) as reader:
        greetings = GreetingReader(reader, stop)
        greetings.start()
        try:
            yield greetings
        finally:
            greetings.finish()


def producer(kafka: Mapping[str, str] | str) -> Producer:
    """The load's producer for `kafka`: a client's settings, or bootstrap servers alone (a plaintext broker)."""
    return Producer(
        {
            **({"bootstrap.servers": kafka} if isinstance(kafka, str) else kafka),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def send(kafka: Producer, topic: str, name: str) -> None:
    while True:
        try:
            kafka.produce(topic, key=name.encode(), value=GreetRequest(name=name).SerializeToString())
            return
        except BufferError:
            kafka.poll(0.05)


def name_pool(label: str, names: int) -> list[str]:
    """`names` distinct names, new for this run: every system starts them at greeting 1."""
    tag = uuid.uuid4().hex[:6]
    return [f"{label}-{tag}-{i}" for i in range(names)]


def expected_counts(pool: Sequence[str], messages: int) -> dict[str, int]:
    """Record i goes to pool[i % len(pool)]: the greeting number each name must end at."""
    rounds, rest = divmod(messages, len(pool))
    expected = {name: rounds + (1 if index < rest else 0) for index, name in enumerate(pool)}
    return {name: count for name, count in expected.items() if count}


@dataclass
class Window:
    """CPU, peak RSS and the runtime's batching over one measurement, for every running process."""

    target: Target
    cpu: dict[str, float] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    batches: tuple[float, float] | None = None

    def open(self) -> None:
        self.pids = dict(self.target.processes())
        for pid in self.pids.values():
            reset_peak_rss(pid)
        self.batches = self.target.batches() if self.target.batches else None
        self.cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def close(self, greetings: int) -> dict[str, Any]:
        spent = {name: cpu_seconds(pid) - self.cpu[name] for name, pid in self.pids.items()}
        own = {name: seconds for name, seconds in spent.items() if name in self.target.own}
        total = sum(own.values())

        def per_1000(seconds: float) -> float | None:
            return round(seconds / greetings * 1000, 4) if greetings else None

        report: dict[str, Any] = {
            "cpu_seconds_per_1000_greetings": {name: per_1000(seconds) for name, seconds in own.items()},
            "cpu_seconds_per_1000_greetings_total": per_1000(total),
            "cpu_share": {name: round(seconds / total, 3) if total else None for name, seconds in own.items()},
            # the other system's processes, idle meanwhile: not charged to this one
            "bystander_cpu_seconds": {name: round(s, 2) for name, s in spent.items() if name not in self.target.own},
            "peak_rss_mb": {name: round(peak_rss_mb(pid)) for name, pid in self.pids.items() if name in own},
        }
        if self.target.batches and self.batches:
            after = self.target.batches()
            messages, requests = after[0] - self.batches[0], after[1] - self.batches[1]
            report["messages_per_request"] = round(messages / requests, 1) if requests else None
        return report


def throughput(target: Target, pool: Sequence[str], messages: int, deadline_s: float = 600) -> dict[str, Any]:
    """Produce `messages` records over `pool` as fast as Kafka takes them; count the committed greetings."""
    if target.prepare is not None:
        target.prepare()
    with reading(target) as reader:
        window = Window(target)
        window.open()
        started = time.monotonic()
        kafka = producer(target.writer)
        for index in range(messages):
            send(kafka, target.input_topic, pool[index % len(pool)])
            if index % 10_000 == 0:
                kafka.poll(0)
        kafka.flush(120)
        produced = time.monotonic()
        reader.wait_for(messages, deadline_s)
        usage = window.close(len(reader.seen))  # before the settle wait: idle time is no work
        time.sleep(target.settle_s)
    seen = reader.seen
    report = verify(((name, greeting) for _t, name, greeting in seen), expected_counts(pool, messages))
    first, last = (seen[0][0], seen[-1][0]) if seen else (started, started)
    return {
        "names": len(pool),
        "messages": messages,
        "greetings": len(seen),
        "correct": report.ok and not reader.invalid and reader.error is None,
        "problems": problems(report, reader),
        "produce_seconds": round(produced - started, 2),
        "greetings_per_s_first_to_last": round(len(seen) / (last - first)) if last > first else None,
        "greetings_per_s_from_first_sent": round(len(seen) / (last - started)) if last > started else None,
        **usage,
    }


def problems(report: Report, reader: GreetingReader) -> list[str]:
    found = [] if report.ok else report.summary(max_names=5)[1:]
    if reader.invalid:
        found.append(f"{len(reader.invalid)} records that are no greeting, e.g. {reader.invalid[0]}")
    return found + ([f"the read ended early: {reader.error}"] if reader.error is not None else [])


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency(
    target: Target, pool: Sequence[str], rate: float, seconds: float, deadline_s: float = 120
) -> dict[str, Any]:
    """`rate` records/s for `seconds`; the delay from each record's send to its greeting becoming visible."""
    if target.prepare is not None:
        target.prepare()
    with reading(target) as reader:
        window = Window(target)
        window.open()
        kafka = producer(target.writer)
        sent_at: dict[tuple[str, int], float] = {}
        counts = dict.fromkeys(pool, 0)
        total = int(rate * seconds)
        started = time.monotonic()
        for index in range(total):
            pause = started + index / rate - time.monotonic()
            if pause > 0:
                kafka.poll(pause)
            name = pool[index % len(pool)]
            counts[name] += 1
            sent_at[(name, counts[name])] = time.monotonic()
            send(kafka, target.input_topic, name)
            kafka.poll(0)
        kafka.flush(60)
        reader.wait_for(total, deadline_s)
        usage = window.close(len(reader.seen))
    seen = reader.seen
    report = verify(((name, greeting) for _t, name, greeting in seen), expected_counts(pool, total))
    numbers = dict.fromkeys(pool, 0)
    delays = []
    for visible, name, _greeting in seen:
        numbers[name] = numbers.get(name, 0) + 1
        if (name, numbers[name]) in sent_at:
            delays.append((visible - sent_at[(name, numbers[name])]) * 1000)
    delays.sort()
    return {
        "rate": rate,
        "seconds": seconds,
        "greetings": len(seen),
        "correct": report.ok and not reader.invalid and reader.error is None,
        "problems": problems(report, reader),
        "p50_ms": round(statistics.median(delays)) if delays else None,
        "p99_ms": round(percentile(delays, 0.99)) if delays else None,
        "max_ms": round(delays[-1]) if delays else None,
        **usage,
    }
