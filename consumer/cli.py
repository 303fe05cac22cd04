"""greeter-consumer: `tail` prints committed greetings, `verify` checks their sequence, `latency` times them.

`main` finds the subcommand (the Kafka flags may come before it) and runs it under the stop signals: exit 0,
1 on a violation or a Kafka error, 2 on a usage error, 130/143 on a second Ctrl-C/SIGTERM. Two lines without a
subcommand stay as aliases, because checks outside the repository run them: the contract's `--from-beginning
--verify --expect-from-names [--timeout S]` is `verify --from-names`, and the bare form (Kafka flags alone) is
`tail`. The other flat flags of 0.1.0 were removed in 0.2.0 (CHANGELOG.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Final

from confluent_kafka import KafkaException

from clitools.kafka_args import add_kafka_arguments
from clitools.progress import Progress
from clitools.signals import ForcedExit, StopFlag, stop_on_signals

from .arguments import COMMANDS, Invocation, build_parser, parse
from .commands import COMMANDS as RUNS
from .session import Session

# The contract's flat verify line says `verify --from-names` with these; `--from-beginning` and `--timeout S`
# mean the same to `verify`, so they pass through.
_CONTRACT_VERIFY: Final = ("--verify", "--expect-from-names")


def _kafka_parser() -> argparse.ArgumentParser:
    """The Kafka flags alone, without their environment defaults (what may come before the subcommand)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    add_kafka_arguments(parser, env={})
    return parser


def _only_kafka_flags(tokens: Sequence[str]) -> bool:
    """Whether `tokens` are Kafka flags and nothing else."""
    try:
        _, rest = _kafka_parser().parse_known_args(tokens)
    except argparse.ArgumentError:
        return False
    return not rest


def subcommand_first(argv: Sequence[str]) -> list[str] | None:
    """`argv` with its subcommand first (Kafka flags before it move after it); None when it names none."""
    for index, token in enumerate(argv):
        if token in COMMANDS and _only_kafka_flags(argv[:index]):
            return [token, *argv[:index], *argv[index + 1 :]]
    return None


def alias(argv: Sequence[str]) -> list[str] | None:
    """The subcommand line of a line that names no subcommand: `tail` for Kafka flags alone, `verify
    --from-names` for the contract's `--from-beginning --verify --expect-from-names` with Kafka flags and an
    optional `--timeout S`. None for any other line.
    """
    if _only_kafka_flags(argv):
        return ["tail", *argv]
    contract = _kafka_parser()
    for flag in ("--from-beginning", *_CONTRACT_VERIFY):
        contract.add_argument(flag, action="store_true")
    contract.add_argument("--timeout")
    try:
        args, rest = contract.parse_known_args(argv)
    except argparse.ArgumentError:
        return None
    if rest or not (args.from_beginning and args.verify and args.expect_from_names):
        return None
    return ["verify", "--from-names", *(token for token in argv if token not in _CONTRACT_VERIFY)]


def _asks_for_help(argv: Sequence[str]) -> bool:
    return any(token == "-h" or (len(token) >= 3 and "--help".startswith(token)) for token in argv)


def run(invocation: Invocation) -> int:
    """Run the subcommand with the stop signals routed to it; Kafka errors and a closed stdout end it."""
    progress = Progress(sys.stderr, enabled=invocation.args.progress)

    def warn(text: str) -> None:
        progress.finish()
        print(f"consumer: {text}", file=sys.stderr)

    try:
        with stop_on_signals(StopFlag()) as stop:
            return RUNS[invocation.command](Session(invocation.args, invocation.config, stop, progress))
    except ForcedExit as forced:
        warn("forced exit")
        return forced.exit_code
    except KafkaException as error:
        warn(f"error: {error}")
        return 1
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, and keep the exit flush from failing.
        # A verdict that could not be printed is no pass.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1 if invocation.command == "verify" else 0


def command_line(argv: Sequence[str]) -> list[str]:
    """The subcommand line `argv` stands for: its own, or an alias's. Exits 2 with a message when it names no
    subcommand and is no alias, 0 after printing the help it asks for.
    """
    line = subcommand_first(argv) or alias(argv)
    if line is not None:
        return line
    if _asks_for_help(argv):
        build_parser().parse_args(["--help"])
    build_parser().error(
        "name a subcommand: tail, verify or latency (the flat flags of 0.1.0 were removed in 0.2.0, all but Kafka "
        "flags alone and '--from-beginning --verify --expect-from-names [--timeout S]'; CHANGELOG.md says what "
        "each one became)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The `greeter-consumer` entry point; returns the exit code (a usage error exits 2 through SystemExit)."""
    return run(parse(command_line(list(sys.argv[1:] if argv is None else argv))))
