"""The command line: `greeter-consumer tail | verify | latency`, each with its own flags and the shared ones.

The shared flags (Kafka, what to read, when to stop, progress) come from one parent parser,
`shared_options`, given to every subcommand. `parse` checks what argparse cannot (flags that need each
other, the names file, the name bound, -X against the consumer's guarantees) and exits 2 with a message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from clitools.argtypes import non_negative_float, non_negative_int, positive_int
from clitools.kafka_args import add_kafka_arguments, kafka_config, stack_login
from clitools.progress import add_progress_argument
from generator.names import InvalidName, read_names_file
from greeter.config.settings import Settings, SettingsError, max_name_length
from greeter.config.wiring import DEAD_LETTER_TOPIC, GREETINGS_TOPIC, NAMES_TOPIC

from .reading.topics import CONSUMER_GUARANTEES

COMMANDS: Final = ("tail", "verify", "latency")
STACK_PRINCIPAL: Final = "consumer"  # its login on the local stack's secured broker (stack/kafka_auth.py)
_STOPPING: Final = (
    "Ctrl-C or SIGTERM stops reading and prints what was read (and the summary); a second one exits at once (130/143)."
)


@dataclass(frozen=True)
class Invocation:
    """A checked command line: the subcommand, its options and the Kafka client settings they make."""

    command: str
    args: argparse.Namespace
    config: dict[str, str]


def shared_options(env: Mapping[str, str] | None = None, *, from_beginning: bool = False) -> argparse.ArgumentParser:
    """The flags every subcommand takes, as a parent parser. `from_beginning`: where the subcommand starts
    reading by default (True: the start, with --no-from-beginning to start at the end).
    """
    parent = argparse.ArgumentParser(add_help=False)
    add_kafka_arguments(parent, env)
    reading = parent.add_argument_group("reading")
    reading.add_argument("--topic", default=GREETINGS_TOPIC, help="topic to read (default: %(default)s)")
    if from_beginning:
        reading.add_argument(
            "--from-beginning",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="read from the start of the topic (default); --no-from-beginning: from its end, where each "
            "name's first greeting sets its baseline",
        )
    else:
        reading.add_argument("--from-beginning", action="store_true", help="read from the start of the topic")
    reading.add_argument("--max-messages", type=non_negative_int, default=0, metavar="N", help="stop after N greetings")
    reading.add_argument(
        "--timeout",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="stop once no greeting has arrived for SECONDS (counted from the start too, so an empty topic "
        "ends after SECONDS); 0 (default) = never",
    )
    reading.add_argument(
        "--duration", type=non_negative_float, default=0.0, metavar="SECONDS", help="stop after SECONDS in all"
    )
    add_progress_argument(parent)
    return parent


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON lines: name, greeting, partition, offset, timestamp")


class _TakesArguments(Protocol):
    """An ArgumentParser or one of its argument groups."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action: ...


def _add_name_bound(parser: _TakesArguments) -> None:
    parser.add_argument("--names-topic", default=NAMES_TOPIC, help="input topic (default: %(default)s)")
    parser.add_argument(
        "--max-name-length",
        type=positive_int,
        metavar="N",
        help="the greeter's bound on names, to tell poison from requests (default: env GREETER_MAX_NAME_LENGTH, "
        f"else {Settings.max_name_length})",
    )


def _add_expected(verify: argparse.ArgumentParser) -> None:
    expected = verify.add_argument_group("what is expected (default: each name's greetings in order, any count)")
    one_way = expected.add_mutually_exclusive_group()
    one_way.add_argument(
        "--from-names",
        action="store_true",
        help="what the input topic (--names-topic) holds as stored: each valid request of a name is one more "
        "greeting, each poison record one dead letter with the same bytes (checked on --dead-letter-topic too). "
        "Reads from the beginning; assumes seen_count does not expire (GREETER_SEEN_COUNT_TTL=0) and that nothing "
        "writes to the input topic meanwhile (stop the generator first: verify says when the topic grew)",
    )
    one_way.add_argument("--per-name", type=non_negative_int, metavar="K", help="every name must end at greeting K")
    expected.add_argument(
        "--names-file",
        type=Path,
        metavar="PATH",
        help="with --per-name: the names that must all reach K, and no other (one per line, as for "
        "greeter-generator); without it, every name read must reach K",
    )
    expected.add_argument(
        "--dead-letter-topic",
        default=DEAD_LETTER_TOPIC,
        help="with --from-names: the dead-letter topic (default: %(default)s)",
    )
    _add_name_bound(expected)
    verify.add_argument(
        "--settle",
        type=non_negative_float,
        default=6.0,
        metavar="SECONDS",
        help="when every expected greeting has arrived (--from-names, or --per-name with --names-file), read on "
        "this long so late duplicates are caught, then stop (default: %(default)s, three 2 s checkpoints)",
    )


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """`greeter-consumer` and its three subcommands."""
    return _build(env)[0]


def _build(env: Mapping[str, str] | None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="greeter-consumer",
        description="Read committed greetings (isolation.level=read_committed) from the greetings topic.",
        epilog="The Kafka flags may also come before the subcommand. Without a subcommand, Kafka flags alone are "
        "tail, and --from-beginning --verify --expect-from-names [--timeout S] is verify --from-names; the other "
        "flat flags of 0.1.0 were removed in 0.2.0. " + _STOPPING,
    )
    commands = parser.add_subparsers(dest="command", required=True, title="commands")
    tail = commands.add_parser(
        "tail",
        parents=[shared_options(env)],
        help="print committed greetings, one per line: name<TAB>greeting, or JSON",
        description="Print committed greetings, one per line: name<TAB>greeting, or JSON with --json. Reads from "
        "the end of the topic unless --from-beginning.",
        epilog=_STOPPING,
    )
    _add_json(tail)
    verify = commands.add_parser(
        "verify",
        parents=[shared_options(env, from_beginning=True)],
        help="check every name's greetings are exactly 1..k in order with the right text; exit 1 on any violation",
        description="Check that each name's greetings are exactly 1..k in order with the right text, against "
        "what is expected; print a summary on stdout, exit 1 on any violation. Reads from the beginning "
        "unless --no-from-beginning.",
        epilog=_STOPPING,
    )
    _add_expected(verify)
    latency = commands.add_parser(
        "latency",
        parents=[shared_options(env)],
        help="print greetings as tail does and report produce-to-visible latency on stderr",
        description="Print greetings as tail does, and follow the input topic (--names-topic) to report "
        "produce-to-visible latency: from each request's timestamp to the moment its greeting is read here. A "
        "line every 5 s on stderr for the last 10 s, and a summary at the end. Requests stored before the start "
        "are counted, not timed. Assumes seen_count does not expire.",
        epilog=_STOPPING,
    )
    _add_json(latency)
    _add_name_bound(latency.add_argument_group("requests"))
    return parser, {"tail": tail, "verify": verify, "latency": latency}


def _check(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The rules argparse cannot say; fills in the name bound's default and the names file's names."""
    if "max_name_length" in args and args.max_name_length is None:
        try:
            args.max_name_length = max_name_length()
        except SettingsError as error:
            command.error(str(error))
    if args.command != "verify":
        return
    if args.names_file is not None and args.per_name is None:
        command.error("--names-file needs --per-name")
    if args.from_names and not args.from_beginning:
        command.error("--from-names reads the topics from the beginning: drop --no-from-beginning")
    args.names = None
    if args.names_file is not None:
        try:
            args.names = read_names_file(args.names_file)  # now, not after a long read
        except (InvalidName, OSError, UnicodeDecodeError) as error:
            command.error(str(error))


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Invocation:
    """The checked command line of a subcommand; exits 2 with a message on a usage error, 0 after --help."""
    parser, commands = _build(env)
    args = parser.parse_args(argv)
    command = commands[args.command]
    _check(command, args)
    login = stack_login(args, STACK_PRINCIPAL)
    if login is not None:
        args.kafka_client_config = login
        print(
            f"consumer: the local stack's Kafka is secured: logging in as {STACK_PRINCIPAL} ({login})", file=sys.stderr
        )
    try:
        config = kafka_config(args, CONSUMER_GUARANTEES)
    except ValueError as error:
        command.error(str(error))
    return Invocation(args.command, args, config)
