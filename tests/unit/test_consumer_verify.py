"""The sequence verifier, and the consumer around it (records, read loop, CLI) against a fake consumer."""

import json
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

import consumer.cli
from clitools.signals import StopFlag
from consumer.cli import main
from consumer.read import Limits, Reader
from consumer.records import InvalidRecord, as_json, as_text, decode
from consumer.verify import MAX_EXAMPLES, Kind, Verifier, greeting_number, verify
from greeter.greeting import compute_greeting
from protos.generated.greeter_pb2 import GreetResponse


def greetings(name: str, numbers: Iterable[int]) -> list[tuple[str, str]]:
    return [(name, compute_greeting(name, n)) for n in numbers]


def kinds(records: list[tuple[str, str]], expected: dict[str, int] | None = None, **options: bool) -> set[Kind]:
    return set(verify(records, expected, **options).counts())


def interleave(*streams: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [record for group in zip(*streams, strict=True) for record in group]


class TestVerifier:
    def test_a_correct_stream_passes(self) -> None:
        records = interleave(greetings("Alice", range(1, 8)), greetings("李雷", range(1, 8)))
        report = verify(records, {"Alice": 7, "李雷": 7})
        assert report.ok
        assert report.records == 14
        assert report.summary() == ["verify: OK: 14 greetings, 2 names, every name 1..k in order"]

    def test_a_gap_fails(self) -> None:
        report = verify(greetings("Alice", [1, 2, 4, 5]))
        assert not report.ok
        assert report.names["Alice"].counts == {Kind.GAP: 1}
        assert "greetings 3 never arrived" in "\n".join(report.summary())

    def test_a_duplicate_fails(self) -> None:
        assert kinds(greetings("Alice", [1, 2, 2, 3])) == {Kind.DUPLICATE}

    def test_a_swap_fails_as_out_of_order(self) -> None:
        assert kinds(greetings("Alice", [1, 3, 2, 4])) == {Kind.OUT_OF_ORDER}

    def test_a_replay_from_the_start_is_duplicates(self) -> None:
        report = verify(greetings("Alice", [1, 2, 3, 1, 2, 3]))
        assert report.names["Alice"].counts == {Kind.DUPLICATE: 3}

    def test_a_missing_tail_fails_against_the_expected_count(self) -> None:
        records = greetings("Alice", range(1, 4)) + greetings("Bob", range(1, 6))
        assert verify(records).ok  # without expectations a short run looks fine ...
        report = verify(records, {"Alice": 5, "Bob": 5})
        assert report.names["Alice"].counts == {Kind.MISSING_TAIL: 1}  # ... with them it does not
        assert report.names["Bob"].ok

    def test_an_expected_name_with_no_greeting_at_all_fails(self) -> None:
        report = verify(greetings("Alice", [1]), {"Alice": 1, "Bob": 1})
        assert [r.name for r in report.failed_names] == ["Bob"]

    def test_an_empty_output_fails(self) -> None:
        assert kinds([]) == {Kind.NO_RECORDS}
        assert kinds([], {"Alice": 2}) == {Kind.NO_RECORDS, Kind.MISSING_TAIL}

    def test_more_than_expected_fails(self) -> None:
        assert kinds(greetings("Alice", range(1, 5)), {"Alice": 3}) == {Kind.TOO_MANY}

    def test_an_unexpected_name_fails(self) -> None:
        assert kinds(greetings("Alice", [1]) + greetings("Mallory", [1]), {"Alice": 1}) == {Kind.UNEXPECTED_NAME}

    @pytest.mark.parametrize(
        "greeting",
        [
            "Welcome Bob",  # another user's greeting
            "welcome Alice",
            "Nice to see you at the 2-nth time Alice!",  # the n-th form starts at 4
            "Nice to see you at the 05-nth time Alice!",
            "Nice to see you at the 5-nth time Alice",
            "",
        ],
    )
    def test_a_wrong_text_fails(self, greeting: str) -> None:
        assert kinds([*greetings("Alice", [1]), ("Alice", greeting)]) == {Kind.WRONG_TEXT}

    @pytest.mark.parametrize("n", [1, 2, 3, 4, 11, 1000])
    def test_greeting_number_reads_back_every_form(self, n: int) -> None:
        assert greeting_number("Zoë", compute_greeting("Zoë", n)) == n

    def test_the_n_th_form_with_a_tricky_name(self) -> None:
        name = "7-nth time Bob"
        assert greeting_number(name, compute_greeting(name, 12)) == 12

    def test_mid_topic_start_takes_each_names_first_greeting_as_baseline(self) -> None:
        records = greetings("Alice", range(40, 45)) + greetings("Bob", [7, 8])
        assert not verify(records).ok
        assert verify(records, from_start=False).ok
        assert verify(records, {"Alice": 44, "Bob": 9}, from_start=False).names["Bob"].counts == {Kind.MISSING_TAIL: 1}
        assert kinds(greetings("Alice", [40, 42]), from_start=False) == {Kind.GAP}

    def test_invalid_records_fail(self) -> None:
        verifier = Verifier()
        for name, greeting in greetings("Alice", [1, 2]):
            verifier.add(name, greeting)
        verifier.add_invalid("partition 0 offset 9: null value (tombstone)")
        report = verifier.report()
        assert set(report.counts()) == {Kind.INVALID_RECORD}

    def test_report_can_be_asked_again_without_double_counting(self) -> None:
        verifier = Verifier()
        for name, greeting in greetings("Alice", [1, 3]):
            verifier.add(name, greeting)
        assert verifier.report().counts() == verifier.report().counts() == {Kind.GAP: 1}
        verifier.add("Alice", compute_greeting("Alice", 2))  # the late one arrives: no gap any more
        assert verifier.report().counts() == {Kind.OUT_OF_ORDER: 1}

    def test_examples_are_capped_but_counts_are_exact(self) -> None:
        report = verify(greetings("Alice", [1] * 100))
        alice = report.names["Alice"]
        assert alice.counts == {Kind.DUPLICATE: 99}
        assert len(alice.examples) == MAX_EXAMPLES


class FakeMessage:
    def __init__(self, key: bytes | None, value: bytes | None, offset: int = 0, error: Any = None) -> None:
        self._key, self._value, self._offset, self._error = key, value, offset, error

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1_700_000_000_000

    def error(self) -> Any:
        return self._error


def message(name: str, n: int, offset: int = 0) -> FakeMessage:
    value = GreetResponse(name=name, greeting=compute_greeting(name, n)).SerializeToString()
    return FakeMessage(name.encode(), value, offset)


class FakeConsumer:
    """Hands out the queued messages, a few per consume(); time passes by each call's timeout."""

    def __init__(self, messages: list[FakeMessage], per_call: int = 3) -> None:
        self.messages = list(messages)
        self.per_call = per_call
        self.now = 0.0
        self.closed = False
        self.on_consume: Callable[[], None] = lambda: None

    def clock(self) -> float:
        return self.now

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.on_consume()
        batch = self.messages[: min(num_messages, self.per_call)]
        del self.messages[: len(batch)]
        if not batch:
            self.now += timeout
        return batch

    def close(self) -> None:
        self.closed = True


class TestRecords:
    def test_decodes_a_greeting(self) -> None:
        greeting = decode(*_fields(message("Zoë", 2, offset=5)))
        assert (greeting.name, greeting.greeting, greeting.offset) == ("Zoë", "Nice to see you again Zoë", 5)
        assert as_text(greeting) == "Zoë\tNice to see you again Zoë"
        assert json.loads(as_json(greeting)) == {
            "name": "Zoë",
            "greeting": "Nice to see you again Zoë",
            "partition": 0,
            "offset": 5,
            "timestamp": 1_700_000_000_000,
        }

    @pytest.mark.parametrize(
        ("key", "value", "reason"),
        [
            (None, b"", "null key"),
            (b"Alice", None, "tombstone"),
            (b"\xff", b"", "utf-8"),
            (b"Alice", b"\xff\xff", "Error parsing"),
            (b"Alice", GreetResponse(name="Bob", greeting="Welcome Bob").SerializeToString(), "differs"),
        ],
    )
    def test_refuses_what_the_greeter_cannot_have_written(self, key: Any, value: Any, reason: str) -> None:
        with pytest.raises(InvalidRecord, match=f"(?i){reason}"):
            decode(key, value, 0, 0, None)


def _fields(msg: FakeMessage) -> tuple[Any, ...]:
    return msg.key(), msg.value(), msg.partition(), msg.offset(), msg.timestamp()[1]


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


class TestCli:
    @pytest.fixture
    def fake(self, monkeypatch: pytest.MonkeyPatch) -> FakeConsumer:
        fake = FakeConsumer([])
        self.opened: list[tuple[dict[str, str], str, bool]] = []

        def open_consumer(config: dict[str, str], topic: str, *, from_beginning: bool) -> FakeConsumer:
            self.opened.append((config, topic, from_beginning))
            return fake

        monkeypatch.setattr(consumer.cli, "open_consumer", open_consumer)
        return fake

    def test_prints_name_tab_greeting_read_committed(
        self, fake: FakeConsumer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        fake.messages = [message("Alice", 1), message("Zoë", 1), message("Alice", 2)]
        assert main(["--timeout", "1"]) == 0
        assert capsys.readouterr().out == "Alice\tWelcome Alice\nZoë\tWelcome Zoë\nAlice\tNice to see you again Alice\n"
        config, topic, from_beginning = self.opened[0]
        assert (config["isolation.level"], topic, from_beginning) == ("read_committed", "greetings", False)
        assert fake.closed

    def test_json_lines(self, fake: FakeConsumer, capsys: pytest.CaptureFixture[str]) -> None:
        fake.messages = [message("Alice", 1, offset=3)]
        assert main(["--json", "--max-messages", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["offset"] == 3

    def test_verify_passes_a_correct_stream(self, fake: FakeConsumer, capsys: pytest.CaptureFixture[str]) -> None:
        fake.messages = [message("Alice", n) for n in (1, 2, 3)]
        assert main(["--verify", "--from-beginning", "--expect", "3", "--timeout", "1"]) == 0
        assert capsys.readouterr().out.startswith("verify: OK: 3 greetings")
        assert self.opened[0][2] is True

    def test_verify_fails_a_gap_and_a_missing_name(
        self, fake: FakeConsumer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        fake.messages = [message("Alice", n) for n in (1, 3)]
        names = tmp_path / "names.txt"
        names.write_text("Alice\nBob\n")
        argv = ["--verify", "--from-beginning", "--expect", "3", "--expect-names-file", str(names), "--timeout", "1"]
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "verify: FAILED" in out
        assert "'Alice': gap: greetings 2 never arrived" in out
        assert "'Bob': missing tail: greetings 1..3 never arrived" in out

    def test_verify_fails_an_empty_topic(self, fake: FakeConsumer) -> None:
        assert main(["--verify", "--from-beginning", "--timeout", "1"]) == 1

    def test_verify_fails_an_invalid_record(self, fake: FakeConsumer) -> None:
        fake.messages = [message("Alice", 1), FakeMessage(b"Alice", None)]
        assert main(["--verify", "--from-beginning", "--timeout", "1"]) == 1

    def test_one_signal_stops_gracefully(self, fake: FakeConsumer, capsys: pytest.CaptureFixture[str]) -> None:
        fake.messages = [message("Alice", 1)]
        fake.on_consume = lambda: signal.raise_signal(signal.SIGINT) if not fake.messages else None
        assert main(["--verify", "--from-beginning"]) == 0  # endless without the signal
        assert "verify: OK: 1 greetings" in capsys.readouterr().out

    def test_a_second_signal_forces_exit_143(self, fake: FakeConsumer) -> None:
        def impatient() -> None:  # a second SIGTERM while the first is still being handled
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)

        fake.on_consume = impatient
        assert main([]) == 143
        assert fake.closed

    @pytest.mark.parametrize(
        "argv",
        [["--expect", "3"], ["--verify", "--expect-names-file", "x"], ["--timeout", "-1"], ["--max-messages", "x"]],
    )
    def test_usage_errors_exit_2(self, fake: FakeConsumer, argv: list[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert self.opened == []
