"""Produce-to-visible latency: from a request's timestamp on `names` to the moment its greeting is read
under read_committed.

A greeting names its request only by its number: the n-th greeting of a name answers that name's n-th valid
request. So the requests stored before the consumer started are counted (not timed), and each one that comes
after is timed. StateFun's egress stamps greetings with the TaskManager's send time, not the input's, so the
greeting's own timestamp cannot give this figure. Holds while seen_count does not expire
(GREETER_SEEN_COUNT_TTL=0): with expiry on, numbers start again and the match is lost.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from .reading.loop import records_of
from .reading.topics import end_offsets, open_consumer, read_until
from .stored_names import judge
from .verify import greeting_number

_BATCH: Final = 1000


@dataclass
class _Requests:
    first: int  # the number of the request at the head of `timestamps`
    timestamps: deque[int] = field(default_factory=deque)  # milliseconds since the epoch, in request order


@dataclass(frozen=True)
class Summary:
    """Latency figures of a set of greetings, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        """The figures as text, in seconds."""
        if not self.count:
            return "no greeting matched to a timed request yet"
        return (
            f"{self.count} greetings: p50 {self.p50_ms / 1000:.2f} s, p99 {self.p99_ms / 1000:.2f} s, "
            f"max {self.max_ms / 1000:.2f} s"
        )


def summarize(latencies_ms: list[float]) -> Summary:
    """Count, p50, p99 and max of `latencies_ms`."""
    if not latencies_ms:
        return Summary(0, 0.0, 0.0, 0.0)
    ordered = sorted(latencies_ms)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return Summary(len(ordered), at(0.50), at(0.99), ordered[-1])


class LatencyTracker:
    """Feed it the valid requests (first those stored before the start, then the new ones, with their
    timestamps) and the greetings as they are read; it hands back each greeting's latency.
    """

    def __init__(self) -> None:
        self._requests: dict[str, _Requests] = {}
        self.untimed = 0  # greetings answering a request stored before the start (or unmatched)

    def count_earlier(self, name: str) -> None:
        """A request stored before the consumer started: it takes a number but has no time to measure from."""
        entry = self._requests.setdefault(name, _Requests(first=1))
        entry.first += 1

    def add_request(self, name: str, timestamp_ms: int) -> None:
        """A request produced after the start, with its record timestamp."""
        self._requests.setdefault(name, _Requests(first=1)).timestamps.append(timestamp_ms)

    def greeting(self, name: str, number: int, read_at_ms: int) -> float | None:
        """The latency of `name`'s greeting `number`, or None when its request is not (yet) known here."""
        entry = self._requests.get(name)
        if entry is None or number < entry.first or number >= entry.first + len(entry.timestamps):
            self.untimed += 1
            return None
        while entry.first < number:  # earlier greetings of this name are past: forget their requests
            entry.timestamps.popleft()
            entry.first += 1
        entry.first += 1
        return float(read_at_ms - entry.timestamps.popleft())


class Window:
    """Latencies of the last `seconds`, for a running figure."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._times: list[float] = []
        self._values: list[float] = []

    def add(self, now: float, latency_ms: float) -> None:
        """One greeting's latency, read at `now`."""
        self._times.append(now)
        self._values.append(latency_ms)

    def summary(self, now: float) -> Summary:
        """The figures of the last `seconds` before `now` (older ones are dropped)."""
        start = bisect.bisect_left(self._times, now - self._seconds)
        del self._times[:start], self._values[:start]
        return summarize(self._values)


class RequestFeed:
    """Follows `names` from its start for a LatencyTracker: requests stored before it opened are counted,
    later ones timed by their record timestamp. Call `catch_up` once, then `poll` before each greetings batch.
    Error events as in `reading.loop.records_of`: fatal ones raise, the others go to `on_error`.
    """

    def __init__(
        self, config: Mapping[str, str], topic: str, max_name_length: int, on_error: Callable[[str], None]
    ) -> None:
        self._consumer = open_consumer(config, topic, from_beginning=True)
        self._topic = topic
        self._on_error = on_error
        try:
            self._ends = end_offsets(self._consumer, topic)
        except BaseException:
            self._consumer.close()  # the caller never gets the feed to close
            raise
        self.tracker = LatencyTracker()
        self._max_name_length = max_name_length
        self.earlier = 0

    def catch_up(self, on_progress: Callable[[], None] = lambda: None) -> None:
        """Count every request stored before the feed opened."""
        for message in read_until(self._consumer, self._topic, self._ends, on_error=self._on_error):
            self._take(message)
            on_progress()

    def poll(self) -> None:
        """Take the requests that arrived since the last call, without waiting."""
        for message in records_of(self._consumer.consume(_BATCH, 0), self._on_error):
            self._take(message)

    def _take(self, message: Any) -> None:
        name = judge(message.key(), message.value(), self._max_name_length)
        if not isinstance(name, str):
            return  # poison gets no greeting
        if message.offset() < self._ends.get(message.partition(), 0):
            self.tracker.count_earlier(name)
            self.earlier += 1
        else:
            kind, timestamp = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                self.tracker.add_request(name, timestamp)

    def close(self) -> None:
        """Close the feed's consumer."""
        self._consumer.close()


class LatencyMonitor:
    """Times each greeting read against its request on `names`; reports a running figure every `every_s`
    over the last `window_s`, and a summary of the whole run at the end.
    """

    def __init__(
        self,
        feed: RequestFeed,
        report: Callable[[str], None],
        every_s: float = 5.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed, self._tracker, self._report, self._clock = feed, feed.tracker, report, clock
        self._every_s, self._window_s = every_s, window_s
        self._window = Window(window_s)
        self._all: list[float] = []
        self._next_report = clock() + every_s

    def before_batch(self) -> None:
        """Take the requests that arrived on `names` before the next batch of greetings is timed."""
        self._feed.poll()

    def greeting(self, name: str, greeting: str) -> None:
        """Time one greeting just read (a wrong text or an unknown request is not timed)."""
        number = greeting_number(name, greeting)
        if number is None:
            return
        latency = self._tracker.greeting(name, number, int(time.time() * 1000))
        if latency is not None:
            self._all.append(latency)
            self._window.add(self._clock(), latency)

    def tick(self) -> None:
        """Report the running figure when it is due."""
        now = self._clock()
        if now >= self._next_report:
            self._next_report = now + self._every_s
            self._report(f"latency, last {self._window_s:.0f} s: {self._window.summary(now).line()}")

    def summary(self) -> str:
        """The figures of the whole run, for the end."""
        return (
            f"latency, produce to visible under read_committed: {summarize(self._all).line()} "
            f"({self._tracker.untimed} greetings for requests stored before the start, not timed)"
        )
