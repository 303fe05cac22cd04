"""The one read loop (Reader) and its one error policy (records_of), for `greetings` and for the topics read
to their end (read_until), and the one reader of committed records (committed_reader), against a fake consumer."""

import signal
import time

import pytest
from confluent_kafka import KafkaException

import consumer.latency
import consumer.reading.topics
from clitools.signals import StopFlag
from consumer.latency import RequestFeed
from consumer.reading.loop import Limits, Reader, records_of
from consumer.reading.topics import committed_reader, read_until

from .test_consumer_verify import FakeConsumer, FakeMessage, error_event, message


class TestErrorPolicy:
    def test_records_pass_in_order_and_a_transient_error_is_reported_and_skipped(self) -> None:
        reported: list[str] = []
        first, second = message("A", 1), message("A", 2)
        assert records_of([first, error_event("broker down"), second], reported.append) == [first, second]
        assert reported == ["broker down"]

    def test_a_fatal_error_raises(self) -> None:
        with pytest.raises(KafkaException):
            records_of([message("A", 1), error_event("fenced", fatal=True)], lambda _text: None)

    def test_the_greetings_read_reports_a_transient_error_and_goes_on(self) -> None:
        fake = FakeConsumer([message("A", 1), error_event("broker down"), message("A", 2)], per_call=1)
        reported: list[str] = []
        reader = Reader(fake, Limits(idle_timeout=1.0), StopFlag(), reported.append, clock=fake.clock)
        assert sum(len(batch) for batch in reader.batches()) == 2
        assert (reported, reader.count, reader.ended_by) == (["broker down"], 2, "--timeout")

    def test_the_greetings_read_raises_on_a_fatal_error(self) -> None:
        fake = FakeConsumer([message("A", 1), error_event("fenced", fatal=True)], per_call=1)
        reader = Reader(fake, Limits(idle_timeout=1.0), StopFlag(), lambda _text: None, clock=fake.clock)
        with pytest.raises(KafkaException):
            list(reader.batches())

    def test_the_read_to_the_end_follows_the_same_policy(self) -> None:
        reported: list[str] = []
        fake = FakeConsumer([message("A", 1, offset=0), error_event("broker down"), message("A", 2, offset=1)])
        assert len(list(read_until(fake, "names", {0: 2}, on_error=reported.append))) == 2
        assert reported == ["broker down"]
        fatal = FakeConsumer([error_event("fenced", fatal=True)])
        with pytest.raises(KafkaException):
            list(read_until(fatal, "names", {0: 2}))

    def test_the_latency_feed_follows_the_same_policy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = FakeConsumer([])
        monkeypatch.setattr(consumer.latency, "open_consumer", lambda config, topic, *, from_beginning: fake)
        monkeypatch.setattr(consumer.latency, "end_offsets", lambda consumer, topic: {0: 0})
        reported: list[str] = []
        feed = RequestFeed({}, "names", 256, reported.append)
        fake.messages = [error_event("broker down")]
        feed.poll()
        assert reported == ["broker down"]
        fake.messages = [error_event("fenced", fatal=True)]
        with pytest.raises(KafkaException):
            feed.poll()


class TestReadUntil:
    def test_stops_once_every_partition_reached_its_end(self) -> None:
        later = FakeMessage(b"A", b"", offset=5)  # produced after the ends were taken
        fake = FakeConsumer([*(message("A", n, offset=n - 1) for n in range(1, 6)), later], per_call=1)
        read = list(read_until(fake, "names", {0: 5}, idle_limit_s=60))
        assert [record.offset() for record in read] == [0, 1, 2, 3, 4]
        assert fake.messages == [later]

    def test_waits_for_every_partition(self) -> None:
        fake = FakeConsumer([FakeMessage(b"A", b"", offset=0, partition=0), FakeMessage(b"B", b"", 0, partition=1)])
        fake.per_call = 1
        assert len(list(read_until(fake, "names", {0: 1, 1: 1}, idle_limit_s=60))) == 2

    def test_an_empty_topic_is_read_at_once(self) -> None:
        assert list(read_until(FakeConsumer([]), "names", {0: 0, 1: 0}, idle_limit_s=60)) == []

    def test_a_partition_that_never_gets_there_raises_naming_it(self) -> None:
        fake = FakeConsumer([message("A", 1, offset=0)])
        fake.on_consume = lambda: time.sleep(0.01)
        with pytest.raises(KafkaException, match=r"names: partitions \[0\] did not reach their end"):
            list(read_until(fake, "names", {0: 3}, idle_limit_s=0.2))


class TestReader:
    def _read(self, fake: FakeConsumer, limits: Limits, stop: StopFlag | None = None) -> tuple[Reader, int]:
        reader = Reader(fake, limits, stop or StopFlag(), on_error=lambda text: None, clock=fake.clock)
        return reader, sum(len(batch) for batch in reader.batches())

    def test_max_messages_stops_exactly_there(self) -> None:
        reader, read = self._read(FakeConsumer([message("A", n) for n in range(1, 11)]), Limits(max_messages=7))
        assert (read, reader.ended_by) == (7, "--max-messages")

    def test_timeout_counts_idle_time_from_the_last_record(self) -> None:
        fake = FakeConsumer([message("A", n) for n in range(1, 5)])
        reader, read = self._read(fake, Limits(idle_timeout=2.0))
        assert (read, reader.ended_by) == (4, "--timeout")
        assert fake.now == pytest.approx(2.0)  # records came at once, then 2 s of nothing

    def test_timeout_ends_an_empty_topic_too(self) -> None:
        reader, read = self._read(FakeConsumer([]), Limits(idle_timeout=1.0))
        assert (read, reader.ended_by) == (0, "--timeout")

    def test_duration_bounds_the_whole_run(self) -> None:
        reader, _ = self._read(FakeConsumer([]), Limits(duration=3.0))
        assert reader.ended_by == "--duration"

    def test_a_stop_request_ends_the_read(self) -> None:
        fake, stop = FakeConsumer([message("A", n) for n in range(1, 100)]), StopFlag()
        fake.on_consume = lambda: stop.handle(signal.SIGTERM) if len(fake.messages) < 90 else None
        reader, read = self._read(fake, Limits(), stop)
        assert reader.ended_by == "stop signal"
        assert read == 15  # the batch in hand when the signal came is still handed over

    def test_settle_zero_stops_as_soon_as_done(self) -> None:
        fake = FakeConsumer([message("A", n) for n in range(1, 10)], per_call=2)
        reader = Reader(fake, Limits(settle=0.0), StopFlag(), lambda _: None, clock=fake.clock, done=lambda: True)
        assert (list(reader.batches()), reader.ended_by) == ([], "--settle")


class TestCommittedReader:
    @pytest.fixture
    def fake(self, monkeypatch: pytest.MonkeyPatch) -> FakeConsumer:
        fake = FakeConsumer([message("A", 1), message("A", 2), message("A", 3)], per_call=1)
        opened: list[tuple[str, bool]] = []

        def open_consumer(config: dict[str, str], topic: str, *, from_beginning: bool) -> FakeConsumer:
            opened.append((topic, from_beginning))
            return fake

        monkeypatch.setattr(consumer.reading.topics, "open_consumer", open_consumer)
        fake.opened = opened  # type: ignore[attr-defined]
        return fake

    def test_it_reads_until_done_and_its_settle_window_then_closes_the_consumer(self, fake: FakeConsumer) -> None:
        got: list[object] = []
        with committed_reader(
            {}, "greetings", Limits(settle=0.0), from_beginning=True, done=lambda: len(got) >= 2
        ) as reader:
            for batch in reader.batches():
                got += batch
        assert (len(got), reader.ended_by, fake.closed) == (2, "--settle", True)
        assert fake.opened == [("greetings", True)]  # type: ignore[attr-defined]

    def test_a_stop_requested_by_another_thread_ends_it_without_a_signal(self, fake: FakeConsumer) -> None:
        stop = StopFlag()
        with committed_reader({}, "greetings", Limits(), from_beginning=False, stop=stop) as reader:
            for _batch in reader.batches():
                stop.request()
        assert (reader.count, reader.ended_by, stop.exit_code, fake.closed) == (1, "stop signal", None, True)

    def test_the_consumer_is_closed_when_the_read_fails(self, fake: FakeConsumer) -> None:
        fake.messages.insert(1, error_event("fenced", fatal=True))
        with (
            pytest.raises(KafkaException),
            committed_reader({}, "greetings", Limits(), from_beginning=True) as reader,
        ):
            list(reader.batches())
        assert fake.closed
