"""The generator without a broker: name pool, produce loop against a fake producer, the CLI's exits."""

import io
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import generator.cli
from clitools.progress import Progress
from clitools.signals import StopFlag
from generator.cli import main
from generator.names import InvalidName, generate_names, parse_names, read_names_file, validate_name
from generator.produce import Totals, drain, encode_records, produce
from protos.generated.greeter_pb2 import GreetRequest


class FakeError:
    def __init__(self, text: str, fatal: bool = False, code: str = "_MSG_TIMED_OUT") -> None:
        self._text, self._fatal, self._code = text, fatal, code

    def fatal(self) -> bool:
        return self._fatal

    def name(self) -> str:
        return self._code

    def str(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeProducer:
    """Queues records; poll() delivers them (failing the keys in `fail_keys`) and advances the fake clock."""

    def __init__(self, clock: FakeClock | None = None, queue_limit: int = 1_000_000) -> None:
        self.clock = clock or FakeClock()
        self.queue_limit = queue_limit
        self.queue: list[tuple[bytes, bytes, Callable[[Any, Any], None]]] = []
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_keys: set[bytes] = set()
        self.buffer_errors = 0
        self.stuck = False  # deliveries never come back
        self.on_poll: Callable[[], None] = lambda: None

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        if len(self.queue) >= self.queue_limit:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        self.queue.append((key, value, on_delivery))
        self.sent.append((topic, key, value))

    def list_topics(self, timeout: float) -> object:
        return object()  # the broker answers: the client gets in

    def poll(self, timeout: float) -> int:
        self.clock.now += timeout
        self.on_poll()
        if self.stuck:
            return 0
        served = len(self.queue)
        for key, _, on_delivery in self.queue:
            on_delivery(FakeError("Broker: boom") if key in self.fail_keys else None, None)
        self.queue.clear()
        return served

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return len(self.queue)


def _run(producer: FakeProducer, names: list[str], **kwargs: Any) -> Totals:
    totals = Totals()
    options: dict[str, Any] = {"count": 0, "rate": 0.0, "stop": StopFlag()} | kwargs
    progress = Progress(io.StringIO(), enabled=False)
    produce(producer, "names", encode_records(names), totals, progress=progress, clock=producer.clock, **options)
    drain(producer, totals, timeout=5.0, progress=progress, clock=producer.clock)
    return totals


class TestNames:
    @pytest.mark.parametrize("name", ["", "   ", "\t"])
    def test_refuses_empty_and_blank_names(self, name: str) -> None:
        with pytest.raises(InvalidName):
            validate_name(name)

    def test_refuses_a_name_that_is_not_utf8_encodable(self) -> None:
        with pytest.raises(InvalidName, match="UTF-8"):
            validate_name("bad\ud800")

    @pytest.mark.parametrize("name", ["Alice", "Zoë", "李雷", "🙂", " padded "])
    def test_keeps_valid_names_as_they_are(self, name: str) -> None:
        assert validate_name(name) == name

    def test_file_lines_lose_only_their_line_ending(self) -> None:
        assert parse_names(["Alice\n", "Bob\r\n", " Eve \n", "Zoë"], "f") == ["Alice", "Bob", " Eve ", "Zoë"]

    def test_a_blank_line_is_refused_with_its_position(self) -> None:
        with pytest.raises(InvalidName, match=r"^names\.txt:2: empty name"):
            parse_names(["Alice\n", "\n", "Bob\n"], "names.txt")

    def test_an_empty_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "names.txt"
        path.write_text("")
        with pytest.raises(InvalidName, match="no names"):
            read_names_file(path)

    def test_generated_names_are_deterministic_distinct_and_valid(self) -> None:
        names = generate_names(500, seed=7)
        assert names == generate_names(500, seed=7)
        assert names != generate_names(500, seed=8)
        assert len(set(names)) == 500
        assert all(validate_name(name) and name.isascii() for name in names)

    def test_unicode_option_makes_every_fifth_name_non_ascii(self) -> None:
        names = generate_names(20, seed=1, unicode=True)
        assert [not name.isascii() for name in names] == [index % 5 == 4 for index in range(20)]


class TestProduceLoop:
    def test_sends_count_records_round_robin_with_key_equal_to_name(self) -> None:
        producer = FakeProducer()
        totals = _run(producer, ["Alice", "Zoë"], count=5)
        assert [key.decode() for _, key, _ in producer.sent] == ["Alice", "Zoë", "Alice", "Zoë", "Alice"]
        assert all(topic == "names" for topic, _, _ in producer.sent)
        assert all(GreetRequest.FromString(value).name == key.decode() for _, key, value in producer.sent)
        assert (totals.sent, totals.delivered, totals.failed, totals.ok) == (5, 5, 0, True)

    def test_a_full_queue_is_drained_by_polling_and_the_same_record_retried(self) -> None:
        producer = FakeProducer(queue_limit=0)  # every produce() hits BufferError ...
        producer.on_poll = lambda: setattr(producer, "queue_limit", 3)  # ... until deliveries make room
        totals = _run(producer, [f"n{i}" for i in range(10)], count=10)
        assert producer.buffer_errors >= 1
        assert [key for _, key, _ in producer.sent] == [f"n{i}".encode() for i in range(10)]
        assert totals.delivered == 10
        assert totals.ok

    def test_delivery_errors_are_counted_and_fail_the_run(self) -> None:
        producer = FakeProducer()
        producer.fail_keys = {b"Bob"}
        totals = _run(producer, ["Alice", "Bob"], count=4)
        assert (totals.delivered, totals.failed, totals.first_error, totals.ok) == (2, 2, "Broker: boom", False)

    def test_records_still_in_flight_after_the_flush_timeout_fail_the_run(self) -> None:
        producer = FakeProducer()
        producer.stuck = True
        totals = _run(producer, ["Alice"], count=3)
        assert totals.undelivered == 3
        assert not totals.ok
        assert producer.clock.now == pytest.approx(5.0, abs=0.2)  # gave up at the flush timeout

    def test_rate_paces_the_records(self) -> None:
        producer = FakeProducer()
        _run(producer, ["Alice"], count=11, rate=10.0)
        # 11 records at 10/s: the last one leaves 1 s after the first (plus the drain's poll slices).
        assert 1.0 <= producer.clock.now <= 1.2

    def test_a_stop_request_ends_production_and_what_was_sent_is_flushed(self) -> None:
        producer, stop = FakeProducer(), StopFlag()

        def on_poll() -> None:
            if len(producer.sent) == 7 and not stop.requested:
                stop.handle(signal.SIGTERM)
            producer.stuck = not stop.requested  # deliveries come back only in the drain

        producer.on_poll = on_poll
        totals = _run(producer, ["Alice"], stop=stop)  # endless without the stop
        assert (totals.sent, totals.delivered) == (7, 7)

    def test_a_fatal_producer_error_stops_production(self) -> None:
        producer = FakeProducer()
        totals = Totals()
        producer.on_poll = lambda: totals.on_error(FakeError("fenced", fatal=True)) if len(producer.sent) == 3 else None
        progress = Progress(io.StringIO(), enabled=False)
        produce(
            producer,
            "names",
            encode_records(["A"]),
            totals,
            count=0,
            rate=0.0,
            stop=StopFlag(),
            progress=progress,
            clock=producer.clock,
        )
        assert totals.sent == 3
        assert totals.fatal_error == "fenced"
        assert not totals.ok


class TestCli:
    @pytest.fixture
    def producer(self, monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
        fake = FakeProducer()
        self.configs: list[dict[str, Any]] = []

        def factory(config: dict[str, Any]) -> FakeProducer:
            self.configs.append(config)
            return fake

        monkeypatch.setattr(generator.cli, "Producer", factory)
        return fake

    def test_produces_with_an_idempotent_producer_and_reports_totals(
        self, producer: FakeProducer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--names", "3", "--count", "6", "--bootstrap-servers", "k:1"]) == 0
        config = self.configs[0]
        assert (config["enable.idempotence"], config["acks"], config["bootstrap.servers"]) == ("true", "all", "k:1")
        assert len(producer.sent) == 6
        captured = capsys.readouterr()
        assert captured.out == ""  # stdout is for data only
        assert "sent 6, delivered 6, failed 0, undelivered 0" in captured.err

    def test_exit_1_on_delivery_errors(
        self, producer: FakeProducer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        producer.fail_keys = {b"Alice"}
        path = tmp_path / "names.txt"
        path.write_text("Alice\nBob\n")
        assert main(["--names-file", str(path), "--count", "4"]) == 1
        assert "first delivery error: Broker: boom" in capsys.readouterr().err

    def test_a_second_signal_forces_exit_130(self, producer: FakeProducer) -> None:
        producer.on_poll = lambda: signal.raise_signal(signal.SIGINT)
        producer.stuck = True  # the drain would wait: the second Ctrl-C must cut it short
        assert main(["--names", "2"]) == 130

    def test_a_single_sigterm_stops_gracefully_with_exit_0(self, producer: FakeProducer) -> None:
        signalled: list[int] = []

        def on_poll() -> None:
            if len(producer.sent) == 5 and not signalled:
                signalled.append(1)
                signal.raise_signal(signal.SIGTERM)

        producer.on_poll = on_poll
        assert main(["--names", "2"]) == 0
        assert len(producer.sent) == 5

    @pytest.mark.parametrize(
        "argv",
        [
            ["--rate", "-1"],
            ["--count", "-5"],
            ["--names", "0"],
            ["--names", "3", "--names-file", "x"],
            ["--names-file", "/nonexistent/names.txt"],
            ["-X", "enable.idempotence=false"],
            ["-X", "acks=1"],
        ],
    )
    def test_usage_errors_exit_2(self, producer: FakeProducer, argv: list[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert producer.sent == []

    def test_a_names_file_with_an_empty_name_is_refused(
        self, producer: FakeProducer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "names.txt"
        path.write_text("Alice\n\nBob\n")
        with pytest.raises(SystemExit) as exit_:
            main(["--names-file", str(path)])
        assert exit_.value.code == 2
        assert f"{path}:2: empty name" in capsys.readouterr().err
        assert producer.sent == []

    def test_list_names_prints_the_pool(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--names", "4", "--seed", "3", "--unicode", "--list-names"]) == 0
        assert capsys.readouterr().out.splitlines() == generate_names(4, 3, unicode=True)
