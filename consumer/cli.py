"""greeter-consumer: print committed greetings from the `greetings` topic, or check their sequence."""

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaException

from clitools.argtypes import non_negative_float, non_negative_int
from clitools.kafka_args import add_kafka_arguments, kafka_config
from clitools.progress import Progress, add_progress_argument
from clitools.signals import ForcedExit, StopFlag, stop_on_signals
from generator.names import InvalidName, read_names_file
from greeter.wiring import GREETINGS_TOPIC

from .read import Limits, Reader
from .records import InvalidRecord, as_json, as_text, decode
from .source import CONSUMER_GUARANTEES, open_consumer
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
    add_progress_argument(parser)
    return parser


def _timestamp(message: Any) -> int | None:
    kind, value = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else int(value)


def _expected(args: argparse.Namespace, verifier: Verifier) -> dict[str, int] | None:
    if args.expect is None:
        return None
    names = read_names_file(args.expect_names_file) if args.expect_names_file else verifier.seen_names
    return dict.fromkeys(names, args.expect)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.expect is not None and not args.verify:
        parser.error("--expect needs --verify")
    if args.expect_names_file is not None and args.expect is None:
        parser.error("--expect-names-file needs --expect")
    if args.expect_names_file is not None:
        try:
            read_names_file(args.expect_names_file)  # fail now, not after a long read
        except (InvalidName, OSError, UnicodeDecodeError) as error:
            parser.error(str(error))


def _take(message: Any, args: argparse.Namespace, verifier: Verifier, warn: Callable[[str], None]) -> bool:
    """Print or verify one record; False when it is not a valid greeting."""
    try:
        key, value = message.key(), message.value()
        greeting = decode(key, value, message.partition(), message.offset(), _timestamp(message))
    except InvalidRecord as error:
        verifier.add_invalid(str(error))
        warn(f"invalid record: {error}")
        return False
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
) -> tuple[Reader, int]:
    """Read until a limit or a stop; returns the reader (count, why it ended) and the invalid records seen."""
    consumer = open_consumer(config, args.topic, from_beginning=args.from_beginning)
    try:
        limits = Limits(args.max_messages, args.timeout, args.duration)
        reader = Reader(consumer, limits, stop, on_error=lambda text: warn(f"kafka: {text}"))
        invalid = 0
        for batch in reader.batches():
            invalid += sum(not _take(message, args, verifier, warn) for message in batch)
            sys.stdout.flush()  # each batch is visible as soon as it is read
            progress.update(lambda: f"read {reader.count} greetings")
        return reader, invalid
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    try:
        config = kafka_config(args, CONSUMER_GUARANTEES)
    except ValueError as error:
        parser.error(str(error))

    progress = Progress(sys.stderr, enabled=args.progress)
    verifier = Verifier(from_start=args.from_beginning)

    def warn(text: str) -> None:
        progress.finish()
        print(f"consumer: {text}", file=sys.stderr)

    try:
        with stop_on_signals(StopFlag()) as stop:
            reader, invalid = _read(args, config, stop, verifier, progress, warn)
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
    if not args.verify:
        return 0
    report = verifier.report(_expected(args, verifier))
    print("\n".join(report.summary()))
    return 0 if report.ok else 1
