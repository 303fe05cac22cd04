"""The Kafka flags every greeter CLI takes, with their environment defaults shown in --help."""

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .kafka_security import (
    FILE_KEYS,
    MECHANISMS,
    PROTOCOLS,
    SECRET_KEYS,
    KafkaSecurity,
    KafkaSecurityError,
    from_values,
)

BOOTSTRAP_ENV: Final = "GREETER_BOOTSTRAP_SERVERS"
DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
CLIENT_CONFIG_ENV: Final = "GREETER_KAFKA_CLIENT_CONFIG"
PROTOCOL_ENV: Final = "GREETER_KAFKA_SECURITY_PROTOCOL"
MECHANISM_ENV: Final = "GREETER_KAFKA_SASL_MECHANISM"
USERNAME_ENV: Final = "GREETER_KAFKA_SASL_USERNAME"
PASSWORD_FILE_ENV: Final = "GREETER_KAFKA_SASL_PASSWORD_FILE"
PASSWORD_ENV: Final = "GREETER_KAFKA_SASL_PASSWORD"  # the environment only: a flag would show in `ps`
CA_ENV: Final = "GREETER_KAFKA_SSL_CA"
# The local stack's run folder (stack/config.py): where `greeter-stack up --kafka-security sasl-ssl` writes a login
# per client, which the CLIs find there when pointed at that stack's broker with nothing else said.
STACK_RUN_DIR_ENV: Final = "GREETER_STACK_RUN_DIR"
DEFAULT_STACK_RUN_DIR: Final = Path(__file__).resolve().parents[1] / "run"
STACK_LOGINS: Final = "kafka-clients"


def _config_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key.strip() in SECRET_KEYS:  # argv is readable by every user of the machine (ps)
        raise argparse.ArgumentTypeError(
            f"-X {key.strip()}: a secret on the command line shows in `ps`; give the password with "
            f"--sasl-password-file, {PASSWORD_ENV} or --kafka-client-config"
        )
    return key.strip(), value


class _RefuseSecret(argparse.Action):
    """A flag that would put a secret in argv: refused, saying how to give it instead."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        raise argparse.ArgumentError(
            self, f"a password on the command line shows in `ps`: use --sasl-password-file or {PASSWORD_ENV}"
        )


def add_kafka_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> None:
    """Add --bootstrap-servers, the security flags and -X; `env` is read now (at parser build time), never at
    import.
    """
    env = os.environ if env is None else env
    group = parser.add_argument_group("Kafka")
    group.add_argument(
        "--bootstrap-servers",
        default=env.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT[,...]",
        help=f"Kafka brokers (env {BOOTSTRAP_ENV}; default: %(default)s)",
    )
    group.add_argument(
        "--kafka-client-config",
        type=Path,
        default=env.get(CLIENT_CONFIG_ENV) or None,
        metavar="FILE",
        help="a credentials file of KEY=VALUE lines (security.protocol, sasl.mechanism, sasl.username, "
        "sasl.password, ssl.ca.location), as `greeter-stack up --kafka-security sasl-ssl` writes one per client "
        f"into RUN_DIR/kafka-clients/; the flags below override it (env {CLIENT_CONFIG_ENV})",
    )
    group.add_argument(
        "--security-protocol",
        type=str.upper,
        choices=PROTOCOLS,
        default=env.get(PROTOCOL_ENV) or None,
        help=f"PLAINTEXT unless a credentials file says otherwise (env {PROTOCOL_ENV})",
    )
    group.add_argument(
        "--sasl-mechanism",
        type=str.upper,
        choices=MECHANISMS,
        default=env.get(MECHANISM_ENV) or None,
        help=f"with SASL_SSL or SASL_PLAINTEXT; PLAIN for API keys (default SCRAM-SHA-512; env {MECHANISM_ENV})",
    )
    group.add_argument("--sasl-username", default=env.get(USERNAME_ENV) or None, help=f"env {USERNAME_ENV}")
    group.add_argument(
        "--sasl-password-file",
        type=Path,
        default=env.get(PASSWORD_FILE_ENV) or None,
        metavar="FILE",
        help=f"a file holding the SASL password (env {PASSWORD_FILE_ENV}; or the password itself in env "
        f"{PASSWORD_ENV}); never on the command line",
    )
    # Named only to refuse it (and so that argparse does not take it for --sasl-password-file, abbreviated).
    group.add_argument("--sasl-password", action=_RefuseSecret, help=argparse.SUPPRESS)
    group.add_argument(
        "--ssl-ca",
        type=Path,
        default=env.get(CA_ENV) or None,
        metavar="FILE",
        help=f"PEM CA bundle the broker's certificate is checked against (default: the system's; env {CA_ENV})",
    )
    group.add_argument(
        "-X",
        "--kafka-config",
        dest="kafka_config",
        type=_config_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting, repeatable (e.g. -X security.protocol=SSL); no secrets",
    )
    parser.set_defaults(
        kafka_password_from_env=env.get(PASSWORD_ENV) or None,
        stack_run_dir=Path(env.get(STACK_RUN_DIR_ENV) or DEFAULT_STACK_RUN_DIR),
    )


def stack_login(args: argparse.Namespace, principal: str) -> Path | None:
    """The local stack's credential file for `principal`, when the flags say nothing about security and
    --bootstrap-servers is the broker of the stack recorded in the run folder (GREETER_STACK_RUN_DIR, else the
    repository's run/) and that stack is secured; else None.
    """
    given = (
        args.kafka_client_config,
        args.security_protocol,
        args.sasl_mechanism,
        args.sasl_username,
        args.sasl_password_file,
        args.ssl_ca,
        args.kafka_password_from_env,
    )
    if any(value is not None for value in given) or any(key in FILE_KEYS for key, _ in args.kafka_config):
        return None
    login: Path = args.stack_run_dir / STACK_LOGINS / f"{principal}.properties"
    try:
        recorded = json.loads((args.stack_run_dir / "stack.json").read_text(encoding="utf-8"))["config"]
        port = int(recorded["ports"]["kafka"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not login.is_file() or args.bootstrap_servers.strip() != f"127.0.0.1:{port}":
        return None
    return login


def kafka_security(args: argparse.Namespace) -> KafkaSecurity:
    """The security the credentials file, -X, the flags and their environment say, in that order of strength;
    KafkaSecurityError naming what is wrong.
    """
    values: dict[str, str] = {}
    if args.kafka_client_config is not None:
        values = KafkaSecurity.from_client_file(args.kafka_client_config).librdkafka()
    values |= {key: value for key, value in args.kafka_config if key in FILE_KEYS}
    password = args.kafka_password_from_env
    if args.sasl_password_file is not None:
        try:
            password = args.sasl_password_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise KafkaSecurityError(f"--sasl-password-file {args.sasl_password_file}: {error.strerror}") from None
    flags = {
        "security.protocol": args.security_protocol,
        "sasl.mechanism": args.sasl_mechanism,
        "sasl.username": args.sasl_username,
        "sasl.password": password,
        "ssl.ca.location": str(args.ssl_ca) if args.ssl_ca is not None else None,
    }
    for key, value in args.kafka_config:
        if flags.get(key) is not None and flags[key] != value:
            raise KafkaSecurityError(f"-X {key}={value} conflicts with {flags[key]} from the security flags")
    values |= {key: value for key, value in flags.items() if value is not None}
    return from_values(values, "Kafka security")


def kafka_config(args: argparse.Namespace, fixed: Mapping[str, str]) -> dict[str, str]:
    """The client configuration: bootstrap servers, the security (none for PLAINTEXT, librdkafka's default), the
    user's other -X settings, then the tool's `fixed` ones.

    A -X that contradicts a security flag or a fixed setting is refused: silently overriding the user hides a
    misconfiguration, and letting it through would break a guarantee the tool promises (e.g. idempotence).
    """
    security = kafka_security(args)
    config = {"bootstrap.servers": args.bootstrap_servers}
    if security.protocol != "PLAINTEXT":
        config |= security.librdkafka()
    for key, value in args.kafka_config:
        if key in FILE_KEYS:
            continue  # part of the security above
        if key in fixed and fixed[key] != value:
            raise ValueError(f"-X {key}={value} conflicts with the required {key}={fixed[key]}")
        config[key] = value
    config.update(fixed)
    return config
