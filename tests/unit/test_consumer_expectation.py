"""What `names` as stored asks for (consumer/stored_names.py), the dead-letter comparison, the settle window,
what `verify` expects (`Expected`, consumer/verify.py), and `greeter-consumer verify --from-names` against fake
topics."""

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import consumer.commands
import consumer.reading.topics
import consumer.session
from clitools.signals import StopFlag
from consumer.cli import main
from consumer.reading.loop import Limits, Reader
from consumer.stored_names import dead_letter_problems, stored_names_from
from consumer.verify import Expected, Verifier
from greeter.function.greeting import compute_greeting
from protos.generated.greeter_pb2 import DeadLetter, DeadLetterReason, GreetRequest, GreetResponse

from .test_consumer_verify import FakeConsumer, FakeMessage, message


def request(name: str) -> tuple[bytes, bytes]:
    return name.encode(), GreetRequest(name=name).SerializeToString()


POISON = [
    (b"bad-protobuf", b"\xff\xff\xff\xff"),
    (b"bad-utf8", b"\x0a\x03Ad\xff"),
    (b"empty", GreetRequest(name="").SerializeToString()),
    (b"x" * 300, GreetRequest(name="x" * 300).SerializeToString()),
    (b"mismatch", GreetRequest(name="somebody").SerializeToString()),
    (b"layout", GreetResponse(name="layout", greeting="hi").SerializeToString()),
]


def letter(key: bytes, value: bytes) -> bytes:
    return DeadLetter(
        address_id=key.decode(), value=value, reason=DeadLetterReason.UNDECODABLE, detail="d"
    ).SerializeToString()


class TestStoredNames:
    def test_counts_each_names_valid_requests(self) -> None:
        records = [request("Alice"), request("Zoë"), request("Alice"), request("Alice")]
        assert stored_names_from(records).greetings == {"Alice": 3, "Zoë": 1}

    def test_every_poison_kind_is_expected_as_one_dead_letter(self) -> None:
        stored = stored_names_from([request("Alice"), *POISON, POISON[0]])
        assert stored.greetings == {"Alice": 1}
        assert stored.dead_letters == Counter({**dict.fromkeys(POISON, 1), POISON[0]: 2})

    def test_the_name_bound_is_the_greeters(self) -> None:
        long = request("y" * 20)
        assert stored_names_from([long], max_name_length=19).dead_letters == Counter([long])
        assert stored_names_from([long], max_name_length=20).greetings == {"y" * 20: 1}

    def test_records_the_runtime_cannot_take_are_named(self) -> None:
        stored = stored_names_from([(None, b"x"), (b"Alice", None), (b"\xff", b"x")])
        assert stored.unprocessable == [
            "record #0: null key",
            "record #1: null value",
            "record #2: key is not UTF-8",
        ]
        assert not stored.greetings and not stored.dead_letters


class TestDeadLetters:
    def test_each_poison_record_once_passes(self) -> None:
        assert dead_letter_problems(Counter(POISON), [letter(k, v) for k, v in reversed(POISON)]) == []

    def test_a_missing_letter_fails(self) -> None:
        problems = dead_letter_problems(Counter(POISON), [letter(k, v) for k, v in POISON[1:]])
        assert problems == ["missing: 1 dead letter(s) for key b'bad-protobuf' with 4 bytes"]

    def test_a_duplicate_letter_fails(self) -> None:
        problems = dead_letter_problems(Counter(POISON[:1]), [letter(*POISON[0])] * 2)
        assert problems == ["unexpected: 1 dead letter(s) for key b'bad-protobuf' with 4 bytes"]

    def test_changed_bytes_fail_both_ways(self) -> None:
        key, value = POISON[0]
        problems = dead_letter_problems(Counter([(key, value)]), [letter(key, value[:-1])])
        assert len(problems) == 2 and problems[0].startswith("missing") and problems[1].startswith("unexpected")

    def test_a_record_that_is_no_dead_letter_fails(self) -> None:
        assert "is not a DeadLetter" in dead_letter_problems(Counter(), [b"\xff\xff"])[0]


class TestSettle:
    def test_complete_only_once_every_expected_name_got_there(self) -> None:
        verifier = Verifier(expected={"A": 2, "B": 1})
        verifier.add("A", compute_greeting("A", 1))
        verifier.add("B", compute_greeting("B", 1))
        assert not verifier.complete
        verifier.add("A", compute_greeting("A", 2))
        assert verifier.complete
        assert not Verifier().complete  # nothing expected up front: never complete

    def test_reading_goes_on_for_the_settle_window_and_catches_a_late_duplicate(self) -> None:
        fake = FakeConsumer([message("A", 1), message("A", 2)], per_call=1)
        verifier = Verifier(expected={"A": 2})
        late = [message("A", 2)]
        # The duplicate arrives 3 s (of fake time) after the read was complete: inside a 5 s window.

        def deliver_late() -> None:
            if fake.now >= 3 and late:
                fake.messages.append(late.pop())

        fake.on_consume = deliver_late
        reader = Reader(
            fake, Limits(settle=5.0), StopFlag(), lambda _: None, clock=fake.clock, done=lambda: verifier.complete
        )
        for batch in reader.batches():
            for record in batch:
                response = GreetResponse.FromString(record.value())
                verifier.add(response.name, response.greeting)
        assert reader.ended_by == "--settle"
        assert fake.now == pytest.approx(5.0, abs=0.2)
        assert verifier.report().counts() == Counter({"duplicate": 1})


class TestExpected:
    def test_order_only_expects_no_end(self) -> None:
        expected = Expected.order_only()
        assert (expected.up_front, expected.at_end(["A"]), expected.checks_dead_letters) == (None, None, False)

    def test_per_name_without_names_holds_every_name_read(self) -> None:
        expected = Expected.per_name(3)
        assert expected.up_front is None  # nothing to settle on: the read ends by its limits
        assert expected.at_end(["A", "B"]) == {"A": 3, "B": 3}

    def test_per_name_with_names_knows_the_end_up_front(self) -> None:
        expected = Expected.per_name(2, ["A", "B"])
        assert expected.up_front == {"A": 2, "B": 2} == expected.at_end(["A", "C"])

    def test_from_stored_names_expects_their_greetings_and_dead_letters(self) -> None:
        stored = stored_names_from([request("Alice"), request("Alice"), POISON[0]])
        expected = Expected.from_stored_names(stored)
        assert expected.up_front == {"Alice": 2} == expected.at_end(["Alice", "Mallory"])
        assert expected.checks_dead_letters and expected.stored_names is stored

    @pytest.mark.parametrize(
        ("expected", "kinds"),
        [
            (Expected.order_only(), set()),
            (Expected.per_name(2), {"missing tail"}),  # Zoë got 1 of 2
            (Expected.per_name(2, ["Alice"]), {"unexpected name"}),
            (Expected.per_name(2, ["Alice", "Zoë", "Bob"]), {"missing tail"}),
        ],
    )
    def test_the_verifier_reports_against_it(self, expected: Expected, kinds: set[str]) -> None:
        verifier = Verifier(expected=expected.up_front)
        for name, n in (("Alice", 1), ("Alice", 2), ("Zoë", 1)):
            verifier.add(name, compute_greeting(name, n))
        assert set(verifier.report(expected.at_end(verifier.seen_names)).counts()) == kinds


# A 30 s idle timeout, so a passing run shows it ended by the settle window.
ARGV = ("verify", "--from-names", "--settle", "1", "--timeout", "30")


class TestCli:
    @pytest.fixture
    def topics(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[FakeMessage]]:
        """greetings through the fake consumer; names and names-dlq through read_to_end; where names ends."""
        topics: dict[str, list[FakeMessage]] = {"greetings": [], "names": [], "names-dlq": []}
        fake = FakeConsumer([])

        def open_consumer(config: dict[str, str], topic: str, *, from_beginning: bool) -> FakeConsumer:
            fake.messages = topics[topic]
            return fake

        def read_to_end(config: dict[str, str], topic: str, **_options: Any) -> Iterator[Any]:
            yield from topics[topic]

        monkeypatch.setattr(consumer.reading.topics, "open_consumer", open_consumer)
        monkeypatch.setattr(consumer.commands, "read_to_end", read_to_end)
        monkeypatch.setattr(consumer.commands, "topic_ends", lambda config, topic: {0: len(topics[topic])})
        return topics

    def test_passes_when_greetings_and_dead_letters_match_names(
        self, topics: dict[str, list[FakeMessage]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics["names"] = [FakeMessage(*request("Alice")), FakeMessage(*POISON[0]), FakeMessage(*request("Alice"))]
        topics["greetings"] = [message("Alice", 1), message("Alice", 2)]
        topics["names-dlq"] = [FakeMessage(POISON[0][0], letter(*POISON[0]))]
        assert main([*ARGV]) == 0
        captured = capsys.readouterr()
        assert (
            captured.out == "verify: OK: 2 greetings, 1 names, every name 1..k in order\ndead letters: OK: 1 expected\n"
        )
        assert "consumer: names: 3 records: 2 requests of 1 names, 1 poison\n" in captured.err
        assert "ended by --settle" in captured.err  # stopped once complete, not by the 30 s timeout

    def test_fails_a_missing_greeting_and_a_missing_dead_letter(
        self, topics: dict[str, list[FakeMessage]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics["names"] = [FakeMessage(*request("Alice")), FakeMessage(*POISON[0]), FakeMessage(*request("Alice"))]
        topics["greetings"] = [message("Alice", 1)]
        assert main([*ARGV[:-1], "1"]) == 1  # never complete: ends by --timeout
        out = capsys.readouterr().out
        assert "'Alice': missing tail: greetings 2 never arrived" in out
        assert "dead letters: FAILED" in out and "missing: 1 dead letter(s) for key b'bad-protobuf'" in out

    def test_a_record_the_runtime_cannot_take_fails(
        self, topics: dict[str, list[FakeMessage]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics["names"] = [FakeMessage(*request("Alice")), FakeMessage(None, b"x", offset=1)]
        topics["greetings"] = [message("Alice", 1)]
        assert main([*ARGV]) == 1
        assert "names: names 0:1: null key (the runtime cannot take it)" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "argv",
        [
            ["--expect-from-names"],
            ["--verify", "--expect-from-names"],
            ["verify", "--from-names", "--no-from-beginning"],
        ],
    )
    def test_needs_reading_from_the_beginning(self, topics: dict[str, list[FakeMessage]], argv: list[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2


class TestDeadLetterDetails:
    def test_a_long_key_is_shown_by_its_first_40_bytes(self) -> None:
        key, value = POISON[3]  # a 300-byte name
        assert dead_letter_problems(Counter([(key, value)]), []) == [
            f"missing: 1 dead letter(s) for key {b'x' * 40!r} with {len(value)} bytes"
        ]
        assert dead_letter_problems(Counter(), [letter(key, value)]) == [
            f"unexpected: 1 dead letter(s) for key {b'x' * 40!r} with {len(value)} bytes"
        ]

    def test_a_record_that_is_no_dead_letter_does_not_hide_the_ones_after_it(self) -> None:
        letters = [letter(*POISON[0]), b"\xff\xff", letter(*POISON[1])]
        problems = dead_letter_problems(Counter(POISON[:2]), letters)
        assert len(problems) == 1
        assert problems[0].startswith("dead letter #1 is not a DeadLetter: ")

    def test_problems_are_sorted_by_key(self) -> None:
        problems = dead_letter_problems(Counter(POISON[:2]), [letter(*POISON[4]), letter(*POISON[2])])
        assert [problem.split(" for key ")[1] for problem in problems] == [
            "b'bad-protobuf' with 4 bytes",
            "b'bad-utf8' with 5 bytes",
            "b'empty' with 0 bytes",
            "b'mismatch' with 10 bytes",
        ]

    def test_every_record_of_names_is_counted(self) -> None:
        assert stored_names_from([request("Alice"), POISON[0], (None, b"x"), request("Alice")]).records == 4
