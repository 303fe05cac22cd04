"""The Kafka flags every greeter CLI takes, with their environment defaults shown in --help."""

import argparse
import os
from collections.abc import Mapping
from typing import Final

BOOTSTRAP_ENV: Final = "GREETER_BOOTSTRAP_SERVERS"
DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_kafka_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """Add --bootstrap-servers and -X; `env` is read now (at parser build time), never at import."""
    env = os.environ if env is None else env
    group = parser.add_argument_group("Kafka")
    group.add_argument(
        "--bootstrap-servers",
        default=env.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT[,...]",
        help=f"Kafka brokers (env {BOOTSTRAP_ENV}; default: %(default)s)",
    )
    group.add_argument(
        "-X",
        "--kafka-config",
        dest="kafka_config",
        type=_config_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting, repeatable (e.g. -X security.protocol=SSL)",
    )


def kafka_config(args: argparse.Namespace, fixed: Mapping[str, str]) -> dict[str, str]:
    """The client configuration: bootstrap servers, the user's -X settings, then the tool's `fixed` ones.

    A -X that contradicts a fixed setting is refused: silently overriding the user hides a misconfiguration,
    and letting it through would break a guarantee the tool promises (e.g. idempotence).
    """
    config = {"bootstrap.servers": args.bootstrap_servers}
    for key, value in args.kafka_config:
        if key in fixed and fixed[key] != value:
            raise ValueError(f"-X {key}={value} conflicts with the required {key}={fixed[key]}")
        config[key] = value
    config.update(fixed)
    return config
