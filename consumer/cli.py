"""greeter-consumer: print committed greetings from the `greetings` topic, or check their sequence."""

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaException

from clitools.argtypes import non_negative_float, non_negative_int, positive_int
from clitools.kafka_args import add_kafka_arguments, kafka_config
from clitools.progress import Progress, add_progress_argument
from clitools.signals import ForcedExit, StopFlag, stop_on_signals
from generator.names import InvalidName, read_names_file
from greeter.settings import Settings, SettingsError, max_name_length
from greeter.wiring import DEAD_LETTER_TOPIC, GREETINGS_TOPIC, NAMES_TOPIC

from .expectation import Expectation, dead_letter_problems
from .latency import LatencyMonitor, RequestFeed
from .read import Limits, Reader
from .records import InvalidRecord, as_json, as_text, decode
from .source import CONSUMER_GUARANTEES, open_consumer, read_to_end
from .verify import Verifier


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greeter-consumer",
        description="Read committed greetings (isolation.level=read_committed) and print one per line: "
        "name<TAB>greeting, or JSON with --json. Reads from the end of the topic unless --from-beginning.",
        epilog="Ctrl-C or SIGTERM stops reading and prints what was read (and the --verify summary); "
        "a second one exits at once (130/143).",
    )
    add_kafka_arguments(parser, env)
    parser.add_argument("--topic", default=GREETINGS_TOPIC, help="topic to read (default: %(default)s)")
    parser.add_argument("--from-beginning", action="store_true", help="read from the start of the topic")
    parser.add_argument("--json", action="store_true", help="JSON lines: name, greeting, partition, offset, timestamp")
    parser.add_argument("--max-messages", type=non_negative_int, default=0, metavar="N", help="stop after N greetings")
    parser.add_argument(
        "--timeout",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="stop once no greeting has arrived for SECONDS (counted from the start too, so an empty topic "
        "ends after SECONDS); 0 (default) = never",
    )
    parser.add_argument(
        "--duration", type=non_negative_float, default=0.0, metavar="SECONDS", help="stop after SECONDS in all"
    )
    checks = parser.add_argument_group("sequence check")
    checks.add_argument(
        "--verify",
        action="store_true",
        help="instead of printing greetings, check that each name's are exactly 1..k in order with the right "
        "text; print a summary, exit 1 on any violation. Without --from-beginning, each name's first "
        "greeting sets its baseline",
    )
    checks.add_argument(
        "--expect", type=non_negative_int, metavar="K", help="with --verify: every name must end at greeting K"
    )
    checks.add_argument(
        "--expect-names-file",
        type=Path,
        metavar="PATH",
        help="with --expect: the names that must all reach K (one per line, as for greeter-generator)",
    )
    checks.add_argument(
        "--expect-from-names",
        action="store_true",
        help="with --verify --from-beginning: work out what must be there from the input topic as stored: each "
        "valid request of a name is one more greeting, each poison record one dead letter with the same bytes "
        "(checked on the dead-letter topic too). Assumes seen_count does not expire (GREETER_SEEN_COUNT_TTL=0)",
    )
    checks.add_argument("--names-topic", default=NAMES_TOPIC, help="input topic (default: %(default)s)")
    checks.add_argument(
        "--dead-letter-topic", default=DEAD_LETTER_TOPIC, help="dead-letter topic (default: %(default)s)"
    )
    checks.add_argument(
        "--max-name-length",
        type=positive_int,
        metavar="N",
        help="the greeter's bound on names, to tell poison from requests (default: env GREETER_MAX_NAME_LENGTH, "
        f"else {Settings.max_name_length})",
    )
    checks.add_argument(
        "--settle",
        type=non_negative_float,
        default=6.0,
        metavar="SECONDS",
        help="when every expected greeting has arrived (--expect-from-names, or --expect with "
        "--expect-names-file), read on this long so late duplicates are caught, then stop (default: %(default)s, "
        "three 2 s checkpoints)",
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also follow the input topic (--names-topic) and report produce-to-visible latency: from each "
        "request's timestamp to the moment its greeting is read here. A line every 5 s on stderr for the last "
        "10 s, and a summary at the end. Requests stored before the start are counted, not timed. Assumes "
        "seen_count does not expire",
    )
    add_progress_argument(parser)
    return parser


def _timestamp(message: Any) -> int | None:
    kind, value = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else int(value)


def _expected_up_front(args: argparse.Namespace) -> dict[str, int] | None:
    """The greeting each name must end at, when it is known before reading (else decided at the end)."""
    if args.expect is not None and args.expect_names_file is not None:
        return dict.fromkeys(read_names_file(args.expect_names_file), args.expect)
    return None


def _expected_at_end(args: argparse.Namespace, verifier: Verifier) -> dict[str, int] | None:
    """--expect without a names file: every name read must reach K (None: keep what was given up front)."""
    if args.expect is None or args.expect_names_file is not None:
        return None
    return dict.fromkeys(verifier.seen_names, args.expect)


def _read_expectation(args: argparse.Namespace, config: Mapping[str, str], progress: Progress) -> Expectation:
    expectation = Expectation(args.max_name_length)
    for message in read_to_end(config, args.names_topic):
        expectation.add(message.key(), message.value(), f"{args.names_topic} {message.partition()}:{message.offset()}")
        progress.update(lambda: f"read {expectation.records} records of {args.names_topic}")
    progress.finish()
    print(
        f"consumer: {args.names_topic}: {expectation.records} records: {sum(expectation.greetings.values())} "
        f"requests of {len(expectation.greetings)} names, {expectation.dead_letters.total()} poison",
        file=sys.stderr,
    )
    return expectation


def _open_latency_feed(
    args: argparse.Namespace, config: Mapping[str, str], progress: Progress, warn: Callable[[str], None]
) -> RequestFeed:
    """Follow `names` with the tracker the monitor will use; count what is stored before timing begins."""
    feed = RequestFeed(config, args.names_topic, args.max_name_length)
    try:
        feed.catch_up(lambda: progress.update(lambda: f"counted {feed.earlier} earlier requests on {args.names_topic}"))
    except BaseException:
        feed.close()
        raise
    progress.finish()
    warn(f"latency: {feed.earlier} requests stored before the start counted; timing the new ones")
    return feed


def _dead_letter_problems(args: argparse.Namespace, config: Mapping[str, str], expectation: Expectation) -> list[str]:
    letters = [message.value() or b"" for message in read_to_end(config, args.dead_letter_topic)]
    problems = [f"{args.names_topic}: {where} (the runtime cannot take it)" for where in expectation.unprocessable]
    return problems + [
        f"{args.dead_letter_topic}: {problem}" for problem in dead_letter_problems(expectation.dead_letters, letters)
    ]


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.expect is not None and not args.verify:
        parser.error("--expect needs --verify")
    if args.expect_names_file is not None and args.expect is None:
        parser.error("--expect-names-file needs --expect")
    if args.expect_from_names and not (args.verify and args.from_beginning):
        parser.error("--expect-from-names needs --verify and --from-beginning")
    if args.expect_from_names and args.expect is not None:
        parser.error("--expect-from-names and --expect are two ways to say what is expected: pick one")
    if args.expect_names_file is not None:
        try:
            read_names_file(args.expect_names_file)  # fail now, not after a long read
        except (InvalidName, OSError, UnicodeDecodeError) as error:
            parser.error(str(error))


def _take(
    message: Any,
    args: argparse.Namespace,
    verifier: Verifier,
    warn: Callable[[str], None],
    latency: LatencyMonitor | None,
) -> bool:
    """Print or verify one record (and time it); False when it is not a valid greeting."""
    try:
        key, value = message.key(), message.value()
        greeting = decode(key, value, message.partition(), message.offset(), _timestamp(message))
    except InvalidRecord as error:
        verifier.add_invalid(str(error))
        warn(f"invalid record: {error}")
        return False
    if latency is not None:
        latency.greeting(greeting.name, greeting.greeting)
    if args.verify:
        verifier.add(greeting.name, greeting.greeting)
    else:
        print(as_json(greeting) if args.json else as_text(greeting))
    return True


def _read(
    args: argparse.Namespace,
    config: Mapping[str, str],
    stop: StopFlag,
    verifier: Verifier,
    progress: Progress,
    warn: Callable[[str], None],
    latency: LatencyMonitor | None,
) -> tuple[Reader, int]:
    """Read until a limit or a stop; returns the reader (count, why it ended) and the invalid records seen."""
    consumer = open_consumer(config, args.topic, from_beginning=args.from_beginning)
    try:
        limits = Limits(args.max_messages, args.timeout, args.duration, settle=args.settle)
        reader = Reader(
            consumer, limits, stop, on_error=lambda text: warn(f"kafka: {text}"), done=lambda: verifier.complete
        )
        invalid = 0
        for batch in reader.batches():
            if latency is not None:
                latency.before_batch()
            invalid += sum(not _take(message, args, verifier, warn, latency) for message in batch)
            if latency is not None:
                latency.tick()
            sys.stdout.flush()  # each batch is visible as soon as it is read
            progress.update(lambda: f"read {reader.count} greetings")
        return reader, invalid
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_name_length is None:
        try:
            args.max_name_length = max_name_length()
        except SettingsError as error:
            parser.error(str(error))
    _check_usage(parser, args)
    try:
        config = kafka_config(args, CONSUMER_GUARANTEES)
    except ValueError as error:
        parser.error(str(error))

    progress = Progress(sys.stderr, enabled=args.progress)

    def warn(text: str) -> None:
        progress.finish()
        print(f"consumer: {text}", file=sys.stderr)

    problems: list[str] = []
    try:
        with stop_on_signals(StopFlag()) as stop:
            expectation = _read_expectation(args, config, progress) if args.expect_from_names else None
            expected = expectation.greetings if expectation else _expected_up_front(args)
            verifier = Verifier(from_start=args.from_beginning, expected=expected)
            feed = _open_latency_feed(args, config, progress, warn) if args.latency else None
            try:
                latency = LatencyMonitor(feed, warn) if feed else None
                reader, invalid = _read(args, config, stop, verifier, progress, warn, latency)
            finally:
                if feed is not None:
                    feed.close()
            if expectation is not None:
                problems = _dead_letter_problems(args, config, expectation)
    except ForcedExit as forced:
        warn("forced exit")
        return forced.exit_code
    except KafkaException as error:
        warn(f"error: {error}")
        return 1
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, and keep the exit flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    progress.finish()
    print(f"consumer: read {reader.count} records ({invalid} invalid), ended by {reader.ended_by}", file=sys.stderr)
    if latency is not None:
        print(f"consumer: {latency.summary()}", file=sys.stderr)
    if not args.verify:
        return 0
    report = verifier.report(_expected_at_end(args, verifier))
    print("\n".join(report.summary()))
    if args.expect_from_names:
        verdict = "FAILED" if problems else "OK"
        print(f"dead letters: {verdict}: {expectation.dead_letters.total() if expectation else 0} expected")
        for problem in problems[:20]:
            print(f"  {problem}")
    return 0 if report.ok and not problems else 1
