"""The sequence verifier and the records it reads; the fake Kafka messages and consumer the other consumer
tests share (test_consumer_read.py: the read loop, test_consumer_cli.py: the command line)."""

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition

from consumer.reading.greetings import InvalidRecord, as_json, as_text, decode
from consumer.verify import MAX_EXAMPLES, Kind, Problem, Verifier, greeting_number, verify
from greeter.function.greeting import compute_greeting
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
    def __init__(
        self, key: bytes | None, value: bytes | None, offset: int = 0, error: Any = None, partition: int = 0
    ) -> None:
        self._key, self._value, self._offset, self._error, self._partition = key, value, offset, error, partition

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1_700_000_000_000

    def error(self) -> Any:
        return self._error


def message(name: str, n: int, offset: int = 0) -> FakeMessage:
    value = GreetResponse(name=name, greeting=compute_greeting(name, n)).SerializeToString()
    return FakeMessage(name.encode(), value, offset)


class FakeError:
    """A KafkaError as a message carries it: fatal or not."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        self.text, self._fatal = text, fatal

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return self.text


def error_event(text: str, fatal: bool = False) -> FakeMessage:
    return FakeMessage(None, None, error=FakeError(text, fatal))


class FakeConsumer:
    """Hands out the queued messages, a few per consume(); time passes by each call's timeout. Its position
    in a partition is the offset after the last record it handed out there."""

    def __init__(self, messages: list[FakeMessage], per_call: int = 3) -> None:
        self.messages = list(messages)
        self.per_call = per_call
        self.now = 0.0
        self.closed = False
        self.on_consume: Callable[[], None] = lambda: None
        self.positions: dict[int, int] = {}

    def clock(self) -> float:
        return self.now

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.on_consume()
        batch = self.messages[: min(num_messages, self.per_call)]
        del self.messages[: len(batch)]
        for record in batch:
            if record.error() is None:
                self.positions[record.partition()] = record.offset() + 1
        if not batch:
            self.now += timeout
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in partitions]

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


class TestReport:
    """What `greeter-consumer verify` prints: each problem with the record it came from, the ranges never seen."""

    def test_a_failed_summary_names_each_problem_and_where_it_was_read(self) -> None:
        verifier = Verifier()
        for n in [1, 6, 9, 4, 4]:  # 2..5 and 7..8 skipped; then 4 late, and 4 again
            verifier.add("Alice", compute_greeting("Alice", n))
        verifier.add("Bob", "Welcome Alice")
        verifier.add_invalid("partition 0 offset 7: null value")
        assert verifier.report({"Alice": 10, "Carol": 1}).summary() == [
            "verify: FAILED: 7 greetings, 3 names, 3 names with problems (duplicate 1, gap 3, invalid record 1,"
            " missing tail 2, out of order 1, unexpected name 1, wrong text 1)",
            "  invalid record: partition 0 offset 7: null value",
            "  'Alice': out of order: greeting 4 after 9 (record #3)",
            "  'Alice': duplicate: greeting 4 again (record #4)",
            "  'Alice': gap: greetings 2..3 never arrived",
            "  'Alice': gap: greetings 5 never arrived",
            "  'Alice': gap: greetings 7..8 never arrived",
            "  'Alice': missing tail: greetings 10 never arrived",
            "  'Bob': wrong text: 'Welcome Alice' (record #5)",
            "  'Bob': unexpected name: 1 greetings for a name not expected",
            "  'Carol': missing tail: greetings 1 never arrived",
        ]

    def test_too_many_says_how_far_the_name_got(self) -> None:
        alice = verify(greetings("Alice", range(1, 6)), {"Alice": 3}).names["Alice"]
        assert [(p.kind, p.detail) for p in alice.examples] == [(Kind.TOO_MANY, "reached 5, expected 3")]

    def test_the_summary_shows_at_most_max_names_names_and_problems(self) -> None:
        verifier = Verifier()
        for index in range(25):
            verifier.add(f"n{index:02}", compute_greeting(f"n{index:02}", 2))  # greeting 1 never came
            verifier.add_invalid(f"record {index}")
        lines = verifier.report().summary()
        assert lines[0].startswith("verify: FAILED: 50 greetings, 25 names, 25 names with problems (")
        assert lines[1:21] == [f"  invalid record: record {index}" for index in range(20)]
        assert lines[21:41] == [f"  'n{index:02}': gap: greetings 1 never arrived" for index in range(20)]
        assert lines[41:] == ["  ... and 5 more names"]
        assert verifier.report().summary(max_names=2)[1:] == [
            "  invalid record: record 0",
            "  invalid record: record 1",
            "  'n00': gap: greetings 1 never arrived",
            "  'n01': gap: greetings 1 never arrived",
            "  ... and 23 more names",
        ]

    @pytest.mark.parametrize("digits", ["²", "٤", "4 ", "+4", "-4"])
    def test_a_number_that_is_not_plain_ascii_digits_is_wrong_text(self, digits: str) -> None:
        greeting = f"Nice to see you at the {digits}-nth time Alice!"
        assert greeting_number("Alice", greeting) is None
        assert kinds([*greetings("Alice", [1, 2, 3]), ("Alice", greeting)]) == {Kind.WRONG_TEXT}

    def test_a_name_not_expected_does_not_complete_the_read(self) -> None:
        verifier = Verifier(expected={"Alice": 2})
        for name, greeting in greetings("Mallory", [1, 2, 3]) + greetings("Alice", [1]):
            verifier.add(name, greeting)
        assert not verifier.complete
        verifier.add("Alice", compute_greeting("Alice", 2))
        assert verifier.complete

    def test_exactly_max_names_failing_names_are_all_shown(self) -> None:
        report = verify([record for index in range(3) for record in greetings(f"n{index}", [2])])
        assert report.summary(max_names=3)[1:] == [
            f"  'n{index}': gap: greetings 1 never arrived" for index in range(3)
        ]

    def test_an_empty_read_says_nothing_was_read(self) -> None:
        assert verify([]).summary() == [
            "verify: FAILED: 0 greetings, 0 names, 0 names with problems (no records 1)",
            "  no records: no greetings were read",
        ]

    def test_a_report_stays_as_it_was_while_reading_goes_on(self) -> None:
        verifier = Verifier()
        for name, greeting in greetings("Alice", [1, 3, 6]):
            verifier.add(name, greeting)
        first = verifier.report()
        before = (list(first.names["Alice"].missing), list(first.names["Alice"].examples), first.summary())
        verifier.add("Alice", compute_greeting("Alice", 2))
        verifier.add("Alice", compute_greeting("Alice", 4))
        assert (first.names["Alice"].missing, first.names["Alice"].examples, first.summary()) == before
        assert verifier.report().names["Alice"].examples == [
            Problem(Kind.OUT_OF_ORDER, "greeting 2 after 6 (record #3)"),
            Problem(Kind.OUT_OF_ORDER, "greeting 4 after 6 (record #4)"),
            Problem(Kind.GAP, "greetings 5 never arrived"),
        ]
