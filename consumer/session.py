"""Reading `greetings` for a subcommand: the session it runs in, the read itself (decode, count the invalid
records, flush stdout after each batch) and the latency monitor that `latency` adds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from clitools.progress import Progress
from clitools.signals import StopFlag

from .latency import LatencyMonitor, RequestFeed
from .reading.greetings import Greeting, InvalidRecord, from_message
from .reading.loop import Limits
from .reading.topics import committed_reader


@dataclass(frozen=True)
class Session:
    """What a subcommand runs with: its options, the Kafka client settings, the stop flag, the progress line."""

    args: argparse.Namespace
    config: Mapping[str, str]
    stop: StopFlag
    progress: Progress

    def warn(self, text: str) -> None:
        """A diagnostic line on stderr, after ending the progress line."""
        self.progress.finish()
        print(f"consumer: {text}", file=sys.stderr)

    def kafka_error(self, text: str) -> None:
        """A transient Kafka error event (librdkafka retries by itself): reported, not fatal."""
        self.warn(f"kafka: {text}")


@dataclass(frozen=True)
class Outcome:
    """How a read of `greetings` went."""

    count: int  # records read, invalid ones included
    invalid: int
    ended_by: str

    def line(self) -> str:
        """The closing line on stderr."""
        return f"read {self.count} records ({self.invalid} invalid), ended by {self.ended_by}"


def read_greetings(
    session: Session,
    on_greeting: Callable[[Greeting], None],
    on_invalid: Callable[[str], None] = lambda _detail: None,
    *,
    latency: LatencyMonitor | None = None,
    done: Callable[[], bool] = lambda: False,
    settle: float | None = None,
) -> Outcome:
    """Read `--topic` within the session's limits (and `settle` seconds past `done`), handing each greeting
    to `on_greeting` (and `latency`) and each record that is none to `on_invalid`, with a warning.
    """
    args = session.args
    limits = Limits(args.max_messages, args.timeout, args.duration, settle=settle)
    invalid = 0
    with committed_reader(
        session.config,
        args.topic,
        limits,
        from_beginning=args.from_beginning,
        stop=session.stop,
        on_error=session.kafka_error,
        done=done,
    ) as reader:
        for batch in reader.batches():
            if latency is not None:
                latency.before_batch()
            for message in batch:
                try:
                    greeting = from_message(message)
                except InvalidRecord as error:
                    invalid += 1
                    on_invalid(str(error))
                    session.warn(f"invalid record: {error}")
                    continue
                if latency is not None:
                    latency.greeting(greeting.name, greeting.greeting)
                on_greeting(greeting)
            if latency is not None:
                latency.tick()
            sys.stdout.flush()  # each batch is visible as soon as it is read
            session.progress.update(lambda: f"read {reader.count} greetings")
    return Outcome(reader.count, invalid, reader.ended_by)


@contextmanager
def latency_monitor(session: Session) -> Iterator[LatencyMonitor]:
    """A monitor following the input topic: the requests it holds already are counted first, so the new ones
    can be timed.
    """
    args = session.args
    feed = RequestFeed(session.config, args.names_topic, args.max_name_length, session.kafka_error)
    try:
        feed.catch_up(
            lambda: session.progress.update(lambda: f"counted {feed.earlier} earlier requests on {args.names_topic}")
        )
        session.warn(f"latency: {feed.earlier} requests stored before the start counted; timing the new ones")
        yield LatencyMonitor(feed, session.warn)
    finally:
        feed.close()


def report_read(session: Session, outcome: Outcome, latency: LatencyMonitor | None = None) -> None:
    """The closing lines on stderr: what was read and why it ended, and the latency summary."""
    session.warn(outcome.line())
    if latency is not None:
        session.warn(latency.summary())
