"""greeter-generator: send GreetRequest records, key = name, to the `names` topic."""

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from confluent_kafka import KafkaException, Producer

from clitools.argtypes import non_negative_float, non_negative_int, positive_int
from clitools.kafka_args import add_kafka_arguments, kafka_config, stack_login
from clitools.kafka_security import AccessWatch, KafkaAccessRefused
from clitools.progress import Progress, add_progress_argument
from clitools.signals import ForcedExit, StopFlag, stop_on_signals
from greeter.config.wiring import NAMES_TOPIC

from .names import generate_names, read_names_file
from .produce import Totals, drain, encode_records, produce

# What the generator promises: no duplicates on retry and no record lost to a leader change.
PRODUCER_GUARANTEES: Final = {"enable.idempotence": "true", "acks": "all"}
STACK_PRINCIPAL: Final = "generator"  # its login on the local stack's secured broker (stack/kafka_auth.py)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """greeter-generator's command line; the Kafka defaults come from `env` (the process environment if None)."""
    parser = argparse.ArgumentParser(
        prog="greeter-generator",
        description="Send GreetRequest records (key = name) to Kafka, names taken round-robin from a pool.",
        epilog="Ctrl-C or SIGTERM stops producing, flushes and prints totals; a second one exits at once "
        "(130/143). Exit 1 if any record was not delivered.",
    )
    add_kafka_arguments(parser, env)
    parser.add_argument("--topic", default=NAMES_TOPIC, help="topic to produce to (default: %(default)s)")
    parser.add_argument(
        "--rate",
        type=non_negative_float,
        metavar="MSG/S",
        default=0.0,
        help="records per second; 0 (default) = as fast as possible",
    )
    parser.add_argument(
        "--count", type=non_negative_int, metavar="N", default=0, help="records to send; 0 (default) = until stopped"
    )
    pool = parser.add_mutually_exclusive_group()
    pool.add_argument(
        "--names", type=positive_int, default=100, metavar="N", help="generate a pool of N names (default: %(default)s)"
    )
    pool.add_argument("--names-file", type=Path, metavar="PATH", help="read the pool from a file, one per line")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated names (default: %(default)s)")
    parser.add_argument("--unicode", action="store_true", help="make every 5th generated name non-ASCII")
    parser.add_argument("--list-names", action="store_true", help="print the pool on stdout and exit")
    parser.add_argument(
        "--flush-timeout",
        type=non_negative_float,
        default=30.0,
        help="seconds to wait for deliveries when stopping (default: %(default)s)",
    )
    add_progress_argument(parser)
    return parser


def _pool(args: argparse.Namespace) -> list[str]:
    if args.names_file is not None:
        return read_names_file(args.names_file)
    return generate_names(args.names, args.seed, unicode=args.unicode)


def _report(totals: Totals, elapsed: float) -> None:
    rate = totals.sent / elapsed if elapsed > 0 else 0.0
    print(
        f"generator: sent {totals.sent}, delivered {totals.delivered}, failed {totals.failed}, "
        f"undelivered {totals.undelivered} in {elapsed:.1f} s ({rate:,.0f} msg/s)",
        file=sys.stderr,
    )
    if totals.first_error is not None:
        print(f"generator: first delivery error: {totals.first_error}", file=sys.stderr)
    if totals.fatal_error is not None:
        print(f"generator: fatal producer error: {totals.fatal_error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run greeter-generator: 0 when every record was delivered, 1 when not, 128 + signal on a forced exit.
    Bad arguments, a bad names file or a bad -X exit 2 through argparse; --list-names prints the pool and exits 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    login = stack_login(args, STACK_PRINCIPAL)
    if login is not None:
        args.kafka_client_config = login
        print(
            f"generator: the local stack's Kafka is secured: logging in as {STACK_PRINCIPAL} ({login})", file=sys.stderr
        )
    try:
        names = _pool(args)
        config: dict[str, object] = {**kafka_config(args, PRODUCER_GUARANTEES)}
    except (OSError, ValueError) as error:  # a bad names file (InvalidName, UnicodeDecodeError) or -X
        parser.error(str(error))
    if args.list_names:
        print("\n".join(names))
        return 0

    totals = Totals()
    ca = config.get("ssl.ca.location")
    watch = AccessWatch(str(config.get("security.protocol", "PLAINTEXT")), str(ca) if ca else None)

    def on_error(error: object) -> None:
        watch.on_error(error)
        totals.on_error(error)
        if watch.problem is not None and totals.fatal_error is None:  # refused (credentials, TLS): stop
            totals.fatal_error = f"Kafka {args.bootstrap_servers} refused this client: {watch.problem}"

    config["error_cb"] = on_error
    config.setdefault("log_level", 3)  # librdkafka's errors, not its info lines (a refused client: one per 50 ms)
    progress = Progress(sys.stderr, enabled=args.progress)
    started = time.monotonic()
    try:
        producer = Producer(config)
    except KafkaException as error:  # a bad -X setting
        parser.error(f"cannot create the producer: {error}")
    try:
        with stop_on_signals(StopFlag()) as stop:
            try:
                watch.first_contact(producer, args.bootstrap_servers, stopped=lambda: stop.requested)
            except KafkaAccessRefused as refused:
                print(f"generator: {refused}", file=sys.stderr)
                return 1
            records = encode_records(names)
            produce(
                producer, args.topic, records, totals, count=args.count, rate=args.rate, stop=stop, progress=progress
            )
            drain(producer, totals, timeout=args.flush_timeout, progress=progress)
    except ForcedExit as forced:
        progress.finish()
        print("generator: forced exit, deliveries not awaited", file=sys.stderr)
        _report(totals, time.monotonic() - started)
        return forced.exit_code
    except KafkaException as error:  # the producer is fatally failed (e.g. refused idempotence): no more sends
        progress.finish()
        producer.poll(0)  # its error_cb names the cause
        totals.fatal_error = totals.fatal_error or str(error)
    progress.finish()
    _report(totals, time.monotonic() - started)
    return 0 if totals.ok else 1
