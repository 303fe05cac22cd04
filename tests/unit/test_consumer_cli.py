"""`greeter-consumer tail | verify | latency`: each subcommand's flags, the usage errors (exit 2), the two lines
without a subcommand that stay (the contract's verify line and the bare form) and the flat flags removed in 0.2.0,
and runs against a fake consumer."""

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import consumer.commands
import consumer.reading.topics
import consumer.session
from consumer.arguments import parse
from consumer.cli import alias, main, subcommand_first
from consumer.latency import LatencyTracker
from protos.generated.greeter_pb2 import GreetRequest

from .test_consumer_verify import FakeConsumer, FakeMessage, error_event, message

SHARED = ["--bootstrap-servers", "b:1", "-X", "client.id=c", "--topic", "t", "--max-messages", "5"]
SHARED += ["--timeout", "2", "--duration", "3", "--no-progress"]


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The message of a usage error, after checking it exits 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


class TestSubcommands:
    def test_the_top_level_help_lists_the_three(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "{tail,verify,latency}" in out
        assert all(f"\n    {name} " in out for name in ("tail", "verify", "latency"))

    @pytest.mark.parametrize("command", ["tail", "verify", "latency"])
    def test_every_subcommand_takes_the_shared_flags(self, command: str) -> None:
        invocation = parse([command, *SHARED])
        args = invocation.args
        assert invocation.config == {
            "bootstrap.servers": "b:1",
            "client.id": "c",
            "isolation.level": "read_committed",
            "enable.auto.commit": "false",
        }
        assert (args.topic, args.max_messages, args.timeout, args.duration, args.progress) == ("t", 5, 2, 3, False)

    def test_verify_reads_from_the_beginning_unless_told_not_to(self) -> None:
        assert parse(["verify"]).args.from_beginning is True
        assert parse(["verify", "--no-from-beginning"]).args.from_beginning is False
        assert parse(["tail"]).args.from_beginning is False
        assert parse(["latency", "--from-beginning"]).args.from_beginning is True

    @pytest.mark.parametrize(
        "argv",
        [
            ["tail", "--settle", "1"],
            ["tail", "--from-names"],
            ["tail", "--names-topic", "n"],
            ["tail", "--no-from-beginning"],
            ["tail", "--verify"],
            ["latency", "--per-name", "3"],
            ["latency", "--settle", "1"],
            ["verify", "--json"],
            ["verify", "--expect", "3"],
            ["verify", "--latency"],
        ],
    )
    def test_each_subcommand_takes_only_its_own_flags(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert "unrecognized arguments" in usage_error(argv, capsys)

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["verify", "--from-names", "--per-name", "3"], "not allowed with argument"),
            (["verify", "--names-file", "names.txt"], "--names-file needs --per-name"),
            (["verify", "--from-names", "--no-from-beginning"], "--from-names reads the topics from the beginning"),
            (["verify", "--per-name", "3", "--names-file", "/nonexistent/names"], "No such file"),
            (["verify", "--per-name", "-1"], "must be >= 0"),
            (["tail", "-X", "isolation.level=read_uncommitted"], "conflicts with the required"),
            (["latency", "--max-name-length", "0"], "must be >= 1"),
            (["tail", "--timeout", "-1"], "must be >= 0"),
        ],
    )
    def test_bad_combinations_exit_2_with_a_message(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        err = usage_error(argv, capsys)
        assert message in err
        assert f"usage: greeter-consumer {argv[0]}" in err
        assert "deprecated" not in err

    def test_the_names_file_is_read_up_front(self, tmp_path: Path) -> None:
        names = tmp_path / "names.txt"
        names.write_text("Alice\nZoë\n")
        assert parse(["verify", "--per-name", "3", "--names-file", str(names)]).args.names == ["Alice", "Zoë"]

    def test_the_name_bound_defaults_to_the_greeters_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GREETER_MAX_NAME_LENGTH", "20")
        assert parse(["verify"]).args.max_name_length == 20
        assert parse(["latency", "--max-name-length", "30"]).args.max_name_length == 30

    def test_a_bad_name_bound_setting_is_a_usage_error_where_it_is_used(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("GREETER_MAX_NAME_LENGTH", "zero")
        assert "GREETER_MAX_NAME_LENGTH" in usage_error(["verify"], capsys)
        assert "GREETER_MAX_NAME_LENGTH" in usage_error(["latency"], capsys)
        assert parse(["tail"]).command == "tail"  # tail has no use for it

    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["verify", "--from-names"], ["verify", "--from-names"]),
            (["--bootstrap-servers", "b:1", "verify"], ["verify", "--bootstrap-servers", "b:1"]),
            (["-X", "a=b", "--bootstrap-servers=b:1", "tail"], ["tail", "-X", "a=b", "--bootstrap-servers=b:1"]),
            (["--topic", "tail"], None),  # a topic named tail, with no subcommand
            (["--bootstrap-servers", "tail"], None),  # a broker named tail
            (["--bootstrap-servers", "b:1"], None),
            (["--verify", "latency"], None),
        ],
    )
    def test_kafka_flags_may_come_before_the_subcommand(self, argv: list[str], expected: list[str] | None) -> None:
        assert subcommand_first(argv) == expected


class FakeFeed:
    """RequestFeed without a broker: nothing stored before the start, and one request of Alice and Zoë
    produced 1.5 s ago."""

    def __init__(self, config: Any, topic: str, max_name_length: int, on_error: Callable[[str], None]) -> None:
        self.tracker = LatencyTracker()
        self.earlier = 0
        for name in ("Alice", "Zoë"):
            self.tracker.add_request(name, int(time.time() * 1000) - 1500)

    def catch_up(self, on_progress: Callable[[], None]) -> None:
        on_progress()

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


def request(name: str) -> FakeMessage:
    return FakeMessage(name.encode(), GreetRequest(name=name).SerializeToString())


class Topics:
    """Fake topics behind every way the consumer reads: `greetings` through open_consumer, `names` and
    `names-dlq` through read_to_end, and the latency feed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: dict[str, list[FakeMessage]] = {"greetings": [], "names": [], "names-dlq": []}
        self.opened: list[tuple[dict[str, str], str, bool]] = []
        self.consumers: list[FakeConsumer] = []
        self.on_consume: Callable[[FakeConsumer], None] = lambda fake: None  # before each consume()
        monkeypatch.setattr(consumer.reading.topics, "open_consumer", self._open_consumer)
        monkeypatch.setattr(consumer.commands, "read_to_end", self._read_to_end)
        monkeypatch.setattr(consumer.commands, "topic_ends", lambda config, topic: {0: len(self.records[topic])})
        monkeypatch.setattr(consumer.session, "RequestFeed", FakeFeed)

    def _open_consumer(self, config: dict[str, str], topic: str, *, from_beginning: bool) -> FakeConsumer:
        self.opened.append((config, topic, from_beginning))
        fake = FakeConsumer(self.records[topic])
        fake.on_consume = lambda: self.on_consume(fake)
        self.consumers.append(fake)
        return fake

    def _read_to_end(self, config: dict[str, str], topic: str, **_options: Any) -> Iterator[FakeMessage]:
        yield from self.records[topic]


@pytest.fixture
def topics(monkeypatch: pytest.MonkeyPatch) -> Topics:
    return Topics(monkeypatch)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TestRuns:
    def test_tail_prints_name_tab_greeting_read_committed(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", 1), message("Zoë", 1), message("Alice", 2)]
        code, out, err = run(["tail", "--timeout", "0.2"], capsys)
        assert code == 0
        assert out == "Alice\tWelcome Alice\nZoë\tWelcome Zoë\nAlice\tNice to see you again Alice\n"
        assert err == "consumer: read 3 records (0 invalid), ended by --timeout\n"
        config, topic, from_beginning = topics.opened[0]
        assert (config["isolation.level"], topic, from_beginning) == ("read_committed", "greetings", False)
        assert topics.consumers[0].closed

    def test_tail_json_lines(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["greetings"] = [message("Alice", 1, offset=3)]
        code, out, _ = run(["tail", "--json", "--max-messages", "1"], capsys)
        assert (code, json.loads(out)["offset"]) == (0, 3)

    def test_latency_prints_the_greetings_and_times_them(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", 1), message("Zoë", 1)]
        code, out, err = run(["latency", "--timeout", "0.2"], capsys)
        assert code == 0
        assert out == "Alice\tWelcome Alice\nZoë\tWelcome Zoë\n"
        lines = err.splitlines()
        assert lines[0] == "consumer: latency: 0 requests stored before the start counted; timing the new ones"
        assert re.match(
            r"consumer: latency, produce to visible under read_committed: 2 greetings: p50 1\.\d\d s", lines[2]
        )

    def test_verify_checks_the_order_by_default(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["greetings"] = [message("Alice", n) for n in (1, 2, 3)]
        code, out, _ = run(["verify", "--timeout", "0.2"], capsys)
        assert (code, out) == (0, "verify: OK: 3 greetings, 1 names, every name 1..k in order\n")
        assert topics.opened[0][2] is True  # from the beginning
        topics.records["greetings"] = [message("Alice", n) for n in (1, 3)]
        assert run(["verify", "--timeout", "0.2"], capsys)[0] == 1

    def test_verify_from_the_end_takes_baselines(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["greetings"] = [message("Alice", n) for n in (7, 8)]
        assert run(["verify", "--no-from-beginning", "--timeout", "0.2"], capsys)[0] == 0
        assert topics.opened[0][2] is False

    def test_verify_per_name_with_a_names_file(
        self, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", n) for n in (1, 3)]
        names = tmp_path / "names.txt"
        names.write_text("Alice\nBob\n")
        code, out, _ = run(["verify", "--per-name", "3", "--names-file", str(names), "--timeout", "0.2"], capsys)
        assert code == 1
        assert "'Alice': gap: greetings 2 never arrived" in out
        assert "'Bob': missing tail: greetings 1..3 never arrived" in out

    def test_verify_per_name_without_a_names_file_holds_every_name_read(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", 1), message("Alice", 2), message("Zoë", 1)]
        code, out, _ = run(["verify", "--per-name", "2", "--timeout", "0.2"], capsys)
        assert code == 1
        assert "'Zoë': missing tail: greetings 2 never arrived" in out

    @pytest.mark.parametrize("records", [[], [message("Alice", 1), FakeMessage(b"Alice", None)]])
    def test_verify_fails_an_empty_topic_and_an_invalid_record(
        self, topics: Topics, records: list[FakeMessage], capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = records
        assert run(["verify", "--timeout", "0.2"], capsys)[0] == 1

    def test_a_transient_kafka_error_is_reported_and_reading_goes_on(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", 1), error_event("broker down"), message("Alice", 2)]
        code, out, err = run(["tail", "--timeout", "0.2"], capsys)
        assert (code, out.count("\n")) == (0, 2)
        assert "consumer: kafka: broker down\n" in err

    def test_a_fatal_kafka_error_exits_1(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["greetings"] = [message("Alice", 1), error_event("fenced", fatal=True)]
        code, _, err = run(["verify", "--timeout", "0.2"], capsys)
        assert code == 1
        assert "consumer: error: " in err
        assert topics.consumers[0].closed

    def test_one_signal_stops_gracefully(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["greetings"] = [message("Alice", 1)]
        topics.on_consume = lambda fake: signal.raise_signal(signal.SIGINT) if not fake.messages else None
        code, out, err = run(["verify"], capsys)  # endless without the signal
        assert (code, out) == (0, "verify: OK: 1 greetings, 1 names, every name 1..k in order\n")
        assert "ended by stop signal" in err

    def test_a_second_signal_forces_exit_143(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        def impatient() -> None:  # a second SIGTERM while the first is still being handled
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)

        topics.on_consume = lambda fake: impatient()
        code, _, err = run(["tail"], capsys)
        assert (code, err) == (143, "consumer: forced exit\n")
        assert topics.consumers[0].closed


CONTRACT = ["--from-beginning", "--verify", "--expect-from-names", "--timeout", "0.2"]


class TestAliases:
    def test_the_contract_form_exits_0_when_exact(self, topics: Topics, capsys: pytest.CaptureFixture[str]) -> None:
        topics.records["names"] = [request("Alice"), request("Alice")]
        topics.records["greetings"] = [message("Alice", 1), message("Alice", 2)]
        code, out, err = run(CONTRACT, capsys)
        assert (code, out) == (
            0,
            "verify: OK: 2 greetings, 1 names, every name 1..k in order\ndead letters: OK: 0 expected\n",
        )
        assert "deprecated" not in err and "ended by --timeout" in err

    def test_the_contract_form_fails_what_verify_fails(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["names"] = [request("Alice"), request("Alice")]
        topics.records["greetings"] = [message("Alice", 1)]
        code, out, _ = run(CONTRACT, capsys)
        assert code == 1
        assert "'Alice': missing tail: greetings 2 never arrived" in out

    @pytest.mark.parametrize(
        ("argv", "line"),
        [
            (CONTRACT, ["verify", "--from-names", "--from-beginning", "--timeout", "0.2"]),
            (
                ["--bootstrap-servers", "b:1", "--verify", "--expect-from-names", "--from-beginning", "-X", "a=b"],
                ["verify", "--from-names", "--bootstrap-servers", "b:1", "--from-beginning", "-X", "a=b"],
            ),
            (["--timeout=5", *CONTRACT[:3]], ["verify", "--from-names", "--timeout=5", "--from-beginning"]),
            (["--bootstrap-servers=b:1"], ["tail", "--bootstrap-servers=b:1"]),
            ([], ["tail"]),
        ],
    )
    def test_each_alias_is_its_subcommand_line(self, argv: list[str], line: list[str]) -> None:
        assert alias(argv) == line

    @pytest.mark.parametrize(
        "argv", [[], ["--bootstrap-servers", "b:1"], ["--bootstrap-servers=b:1", "-X", "client.id=c"]]
    )
    def test_the_bare_form_is_tail_without_a_word(
        self, topics: Topics, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["greetings"] = [message("Alice", 1)]
        topics.on_consume = lambda fake: signal.raise_signal(signal.SIGINT) if not fake.messages else None
        code, out, err = run(argv, capsys)
        assert (code, out, err) == (
            0,
            "Alice\tWelcome Alice\n",
            "consumer: read 1 records (0 invalid), ended by stop signal\n",
        )

    @pytest.mark.parametrize(
        "argv",
        [
            ["--timeout", "0.2"],
            ["--from-beginning", "--json"],
            ["--verify", "--timeout", "0.2"],
            ["--verify", "--expect-from-names", "--timeout", "0.2"],  # the contract reads from the beginning
            ["--expect-from-names"],
            [*CONTRACT, "--settle", "1"],
            ["--verify", "--from-beginning", "--expect", "3"],
            ["--latency"],
            ["--bogus"],
        ],
    )
    def test_the_other_flat_flags_of_0_1_0_are_a_usage_error(
        self, topics: Topics, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        err = usage_error(argv, capsys)
        assert "name a subcommand: tail, verify or latency (the flat flags of 0.1.0 were removed in 0.2.0" in err
        assert topics.opened == []

    def test_verify_from_names_says_when_names_grew_while_it_ran(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["names"] = [request("Alice")]
        topics.records["greetings"] = [message("Alice", 1), message("Alice", 2)]

        def generator_still_running(_fake: object) -> None:  # a second request lands while greetings are read
            if len(topics.records["names"]) == 1:
                topics.records["names"].append(request("Alice"))

        topics.on_consume = generator_still_running
        code, out, err = run(["verify", "--from-names", "--timeout", "0.2", "--settle", "0"], capsys)
        assert code == 1
        assert "reached 2, expected 1" in out
        assert (
            "consumer: names grew by 1 records while verify ran: --from-names expects what names held when it began, "
            "so greetings of the newer requests count as too many; stop what writes to names (the generator) and "
            "verify again"
        ) in err

    def test_verify_from_names_on_a_still_input_says_nothing_of_growth(
        self, topics: Topics, capsys: pytest.CaptureFixture[str]
    ) -> None:
        topics.records["names"] = [request("Alice")]
        topics.records["greetings"] = [message("Alice", 1)]
        code, _, err = run(["verify", "--from-names", "--timeout", "0.2", "--settle", "0"], capsys)
        assert code == 0
        assert "grew" not in err

    def test_help_without_a_subcommand_is_the_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["--verify", "--help"])
        assert exit_.value.code == 0
        assert "{tail,verify,latency}" in capsys.readouterr().out
