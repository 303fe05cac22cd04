"""`python -m deploy_render.kafka_acls`: create every client's ACLs (stack/kafka_auth.ACLS) on a secured broker,
logged in as its admin super user with the greeter CLIs' Kafka flags. Idempotent: an ACL that exists is left as it is.

The compose stack's one-shot `kafka-acls` job (docker-compose.kafka-sasl.yml) runs it from the greeter image, so
the grants come from the same list as the local stack's (`greeter-stack up`), never retyped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from confluent_kafka.admin import AdminClient

from clitools.kafka_args import add_kafka_arguments, kafka_config
from clitools.kafka_security import AccessWatch, KafkaAccessRefused, KafkaSecurityError
from stack.kafka import create_acls
from stack.kafka_auth import ACLS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy_render.kafka_acls",
        description="Create every greeter client's ACLs on a secured Kafka, as a super user (e.g. "
        "--kafka-client-config admin.properties).",
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the broker (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Create the ACLs; 0 when all are in place, 1 with one line saying why not."""
    args = _parser().parse_args(argv)
    try:
        config = kafka_config(args, {})
    except (KafkaSecurityError, ValueError) as error:
        print(f"kafka_acls: {error}", file=sys.stderr)
        return 2
    watch = AccessWatch(config.get("security.protocol", "PLAINTEXT"))
    # log_level 3: librdkafka's errors only; error_cb sees a refusal that it would otherwise retry for good.
    settings: dict[str, Any] = {**config, "log_level": 3, "error_cb": watch.on_error}
    client = AdminClient(settings)
    try:
        watch.first_contact(client, args.bootstrap_servers, timeout=args.timeout)
        create_acls(client)
    except (KafkaAccessRefused, RuntimeError) as error:
        print(f"kafka_acls: {error}", file=sys.stderr)
        return 1
    print(f"kafka_acls: {len(ACLS)} ACLs in place on {args.bootstrap_servers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
