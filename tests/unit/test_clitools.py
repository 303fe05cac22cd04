"""The CLIs' shared pieces: stop flag and signals, progress line, Kafka flags."""

import argparse
import io
import os
import signal
from collections.abc import Callable

import pytest

from clitools.argtypes import non_negative_float, non_negative_int, positive_int
from clitools.kafka_args import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, add_kafka_arguments, kafka_config
from clitools.progress import Progress
from clitools.signals import ForcedExit, StopFlag, Terminated, stop_on_signals, unwinding_on_sigterm


class TestStopFlag:
    def test_first_signal_only_requests_a_stop(self) -> None:
        flag = StopFlag()
        assert not flag.requested
        flag.handle(signal.SIGTERM)
        assert flag.requested and flag.event.is_set()
        assert flag.signum == signal.SIGTERM
        assert flag.exit_code == 143

    @pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_second_signal_forces_exit_with_128_plus_signal(self, signum: int, code: int) -> None:
        flag = StopFlag()
        flag.handle(signal.SIGINT)
        with pytest.raises(ForcedExit) as forced:
            flag.handle(signum)
        assert forced.value.exit_code == code

    def test_forced_exit_is_not_swallowed_by_except_exception(self) -> None:
        assert not issubclass(ForcedExit, Exception)

    def test_real_signals_reach_the_flag_and_old_handlers_come_back(self) -> None:
        before = signal.getsignal(signal.SIGTERM)
        with stop_on_signals(StopFlag()) as flag:
            os.kill(os.getpid(), signal.SIGTERM)
            assert flag.signum == signal.SIGTERM
            with pytest.raises(ForcedExit):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_unwinds_like_ctrl_c_inside_the_block_only() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), unwinding_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
    assert issubclass(Terminated, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestProgress:
    def test_silent_when_the_stream_is_not_a_terminal(self) -> None:
        stream = io.StringIO()
        progress = Progress(stream)
        progress.update(lambda: "sent 1")
        progress.finish()
        assert stream.getvalue() == ""

    def test_forced_on_redraws_at_most_once_per_interval(self) -> None:
        stream, clock = io.StringIO(), FakeClock()
        progress = Progress(stream, enabled=True, interval=0.5, clock=clock)
        renders: list[int] = []

        def render() -> str:
            renders.append(1)
            return f"n={len(renders)}"

        progress.update(render)
        clock.now += 0.2
        progress.update(render)  # too soon: not drawn, not even rendered
        clock.now += 0.4
        progress.update(render)
        assert len(renders) == 2
        progress.finish()
        assert stream.getvalue() == "\rn=1\x1b[K\rn=2\x1b[K\n"

    def test_forced_off_stays_silent_on_a_terminal(self) -> None:
        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        stream = Tty()
        Progress(stream, enabled=False).update(lambda: "x")
        assert stream.getvalue() == ""
        Progress(stream).update(lambda: "x")
        assert stream.getvalue() == "\rx\x1b[K"


def _parse(argv: list[str], env: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser, env)
    return parser.parse_args(argv)


class TestKafkaArguments:
    def test_default_without_env(self) -> None:
        assert _parse([], {}).bootstrap_servers == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"

    def test_default_from_env(self) -> None:
        assert _parse([], {BOOTSTRAP_ENV: "kafka:29092"}).bootstrap_servers == "kafka:29092"

    def test_empty_env_means_default(self) -> None:
        assert _parse([], {BOOTSTRAP_ENV: ""}).bootstrap_servers == DEFAULT_BOOTSTRAP

    def test_flag_beats_env(self) -> None:
        args = _parse(["--bootstrap-servers", "b:1"], {BOOTSTRAP_ENV: "kafka:29092"})
        assert args.bootstrap_servers == "b:1"

    def test_help_names_the_env_variable_and_shows_the_default(self) -> None:
        parser = argparse.ArgumentParser()
        add_kafka_arguments(parser, {BOOTSTRAP_ENV: "kafka:29092"})
        text = " ".join(parser.format_help().split())
        assert BOOTSTRAP_ENV in text
        assert "default: kafka:29092" in text

    def test_extra_settings_and_fixed_ones(self) -> None:
        args = _parse(["-X", "linger.ms=20", "-X", "acks=all"], {})
        config = kafka_config(args, {"acks": "all", "enable.idempotence": "true"})
        assert config == {
            "bootstrap.servers": DEFAULT_BOOTSTRAP,
            "linger.ms": "20",
            "acks": "all",
            "enable.idempotence": "true",
        }

    def test_an_extra_setting_may_not_contradict_a_fixed_one(self) -> None:
        args = _parse(["-X", "acks=1"], {})
        with pytest.raises(ValueError, match="acks=1 conflicts"):
            kafka_config(args, {"acks": "all"})

    def test_malformed_extra_setting_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit) as exit_:
            _parse(["-X", "linger.ms"], {})
        assert exit_.value.code == 2


class TestArgTypes:
    @pytest.mark.parametrize(
        ("convert", "good", "bad"),
        [
            (non_negative_int, ["0", "7"], ["-1", "1.5"]),
            (positive_int, ["1", "100"], ["0", "-3"]),
            (non_negative_float, ["0", "2.5"], ["-0.1", "nan", "x"]),
        ],
    )
    def test_bounds(self, convert: Callable[[str], float], good: list[str], bad: list[str]) -> None:
        parser = argparse.ArgumentParser()
        parser.add_argument("--n", type=convert)
        assert [parser.parse_args(["--n", text]).n for text in good] == [float(text) for text in good]
        for text in bad:
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args(["--n", text])
            assert exit_.value.code == 2
