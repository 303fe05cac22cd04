"""greeter-consumer: `tail` prints committed greetings, `verify` checks their sequence, `latency` times them.

`main` finds the subcommand (the Kafka flags may come before it), or else reads the command line as the
flat flags of the last release (consumer/legacy.py), then runs the subcommand under the stop signals:
exit 0, 1 on a violation or a Kafka error, 2 on a usage error, 130/143 on a second Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaException

from clitools.kafka_args import add_kafka_arguments
from clitools.progress import Progress
from clitools.signals import ForcedExit, StopFlag, stop_on_signals

from . import legacy
from .arguments import COMMANDS, Invocation, parse
from .commands import COMMANDS as RUNS
from .follow import Session


def _only_kafka_flags(tokens: Sequence[str]) -> bool:
    """Whether `tokens` are Kafka flags and nothing else (what may come before the subcommand)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_kafka_arguments(parser, env={})
    try:
        _, rest = parser.parse_known_args(tokens)
    except argparse.ArgumentError:
        return False
    return not rest


def subcommand_first(argv: Sequence[str]) -> list[str] | None:
    """`argv` with its subcommand first (Kafka flags before it move after it); None when it names none."""
    for index, token in enumerate(argv):
        if token in COMMANDS and _only_kafka_flags(argv[:index]):
            return [token, *argv[:index], *argv[index + 1 :]]
    return None


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


def main(argv: Sequence[str] | None = None) -> int:
    """The `greeter-consumer` entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = subcommand_first(argv)
    time_latency = False
    if command_line is None and not _asks_for_help(argv):
        translation = legacy.translate(argv)
        if translation.notice is not None:
            print(f"consumer: {translation.notice}", file=sys.stderr)
        command_line, time_latency = translation.argv, translation.time_latency
    invocation = parse(argv if command_line is None else command_line)
    if time_latency:
        invocation.args.time_latency = True
    return run(invocation)
