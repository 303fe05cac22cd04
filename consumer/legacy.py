"""The flat flags of the last release, kept for one release as aliases of the subcommands.

`greeter-consumer [--from-beginning] [--json] [--max-messages N] [--timeout S] ...` is `tail`, `--verify
[--expect K [--expect-names-file F] | --expect-from-names] [--settle S]` is `verify`, `--latency` is `latency`
(`--verify --latency` is both at once, as before). They parse and check exactly as before, then run as the
subcommand they stand for, after one deprecation line on stderr naming it. The bare form (no flag but the
Kafka ones, as `scripts/run` uses it) is `tail` without a word.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from clitools.argtypes import non_negative_float, non_negative_int, positive_int
from clitools.kafka_args import KAFKA_FLAGS, kafka_config, kafka_flags
from generator.names import InvalidName, read_names_file
from greeter.config.settings import SettingsError, max_name_length
from greeter.config.wiring import DEAD_LETTER_TOPIC, NAMES_TOPIC

from .arguments import shared_options
from .source import CONSUMER_GUARANTEES

_KAFKA_DESTS: Final = frozenset({*KAFKA_FLAGS, "kafka_config"})
_ALL: Final = ("tail", "verify", "latency")
# Legacy flag (its dest) -> the subcommand flag it became, and the subcommands that take it.
_CARRIED: Final = (
    ("json", "--json", ("tail", "latency")),
    ("expect_from_names", "--from-names", ("verify",)),
    ("expect", "--per-name", ("verify",)),
    ("expect_names_file", "--names-file", ("verify",)),
    ("names_topic", "--names-topic", ("verify", "latency")),
    ("dead_letter_topic", "--dead-letter-topic", ("verify",)),
    ("max_name_length", "--max-name-length", ("verify", "latency")),
    ("settle", "--settle", ("verify",)),
    ("topic", "--topic", _ALL),
    ("max_messages", "--max-messages", _ALL),
    ("timeout", "--timeout", _ALL),
    ("duration", "--duration", _ALL),
)


@dataclass(frozen=True)
class Translation:
    """A flat command line as the subcommand line it stands for."""

    argv: list[str]  # the subcommand, then its flags (the Kafka ones included)
    time_latency: bool  # `--verify --latency`: verify, timing latency too (no subcommand says that)
    notice: str | None  # the deprecation line; None for the bare form


def legacy_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The flat parser of the last release: the shared flags, then those that chose what to do."""
    parser = argparse.ArgumentParser(
        prog="greeter-consumer",
        usage="greeter-consumer {tail,verify,latency} ... (see --help; the flat flags of the last release still work)",
        add_help=False,
        parents=[shared_options(env)],
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--expect", type=non_negative_int, metavar="K")
    parser.add_argument("--expect-names-file", type=Path, metavar="PATH")
    parser.add_argument("--expect-from-names", action="store_true")
    parser.add_argument("--names-topic", default=NAMES_TOPIC)
    parser.add_argument("--dead-letter-topic", default=DEAD_LETTER_TOPIC)
    parser.add_argument("--max-name-length", type=positive_int, metavar="N")
    parser.add_argument("--settle", type=non_negative_float, default=6.0, metavar="SECONDS")
    parser.add_argument("--latency", action="store_true")
    return parser


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The last release's rules, word for word."""
    if args.max_name_length is None:
        try:
            max_name_length()
        except SettingsError as error:
            parser.error(str(error))
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
    try:
        kafka_config(args, CONSUMER_GUARANTEES)
    except ValueError as error:
        parser.error(str(error))


def _given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests of the flags on the command line: parsed over a namespace where each is None, argparse
    leaves the others alone (no flag parses to None).
    """
    probe = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([]))))
    parser.parse_args(argv, namespace=probe)
    return {dest for dest, value in vars(probe).items() if value is not None}


def _value(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _flags(args: argparse.Namespace, given: set[str], command: str) -> list[str]:
    """The flags of `command` that say what the given flat flags said (the Kafka ones aside)."""
    flags: list[str] = []
    if command == "verify" and not args.from_beginning:
        flags.append("--no-from-beginning")
    elif command != "verify" and args.from_beginning:
        flags.append("--from-beginning")
    for dest, flag, commands in _CARRIED:
        if dest not in given or command not in commands:
            continue  # not given, or a flag the last release took and ignored here (e.g. --json with --verify)
        value = getattr(args, dest)
        if value is True:
            flags.append(flag)
        else:
            text = _value(value)
            flags += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
    if "progress" in given:
        flags.append("--progress" if args.progress else "--no-progress")
    return flags


def _notice(args: argparse.Namespace, given: set[str], command: str) -> str:
    def line(name: str) -> str:
        return shlex.join(["greeter-consumer", name, *_flags(args, given, name)])

    if args.verify and args.latency:
        head, use = "--verify --latency is", f"'{line('verify')}' and, beside it, '{line('latency')}'"
    else:
        head = {"verify": "--verify is", "latency": "--latency is"}.get(command, "flags without a subcommand are")
        use = f"'{line(command)}'"
    kafka = ", with the same Kafka flags" if given & _KAFKA_DESTS else ""
    return f"{head} deprecated: use {use}{kafka}"


def translate(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Translation:
    """Parse and check a flat command line as the last release did (exit 2 on a usage error), and say which
    subcommand line it stands for.
    """
    parser = legacy_parser(env)
    given = _given(parser, argv)
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    command = "verify" if args.verify else "latency" if args.latency else "tail"
    subcommand_argv = [command, *kafka_flags(args, given), *_flags(args, given, command)]
    notice = None if given <= _KAFKA_DESTS else _notice(args, given, command)
    return Translation(subcommand_argv, args.verify and args.latency, notice)
