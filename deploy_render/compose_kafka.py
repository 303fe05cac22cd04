"""The compose stack's secured Kafka (docker-compose.kafka-sasl.yml): the same broker and logins as
`greeter-stack up --kafka-security sasl-ssl` (stack/kafka_auth.py), as files for containers.

`python -m deploy_render.compose_kafka deploy/compose/kafka-auth --world-readable` makes them, never committed
(the folder is gitignored): the broker's CA and PEM key store for `kafka` (and localhost, the published port), the
broker's JAAS file (its own SCRAM login, the controller's PLAIN login, and the admin login of its health check), a
Java argument file that creates the SCRAM users when the storage is formatted (the passwords never on a command line),
the JAAS files of the topics job (admin) and of the runtime, and a credentials file (`--kafka-client-config`) for
the ACL job (admin), the generator and the consumer. The credentials files name no CA: each container is given its
mounted copy with `--ssl-ca` (GREETER_KAFKA_SSL_CA), and a client on the host the folder's own `ca.pem`.

The compose stack has no `monitor` login: nothing there reads the ingress lag.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from certs.tls import mint_kafka
from clitools.kafka_security import KafkaSecurity, write_secret
from stack.config import REPO_ROOT
from stack.kafka import STORAGE_TOOL, java_argfile_text
from stack.kafka_auth import (
    ADMIN,
    CONSUMER,
    GENERATOR,
    MECHANISM,
    PROTOCOL,
    RUNTIME,
    broker_login,
    controller_login,
    new_password,
    scram_users_arguments,
)

COMPOSE_KAFKA_AUTH_DIR: Final = REPO_ROOT / "deploy" / "compose" / "kafka-auth"
# Where every container finds the files it is given, each bind-mounted on its own.
CONTAINER_DIR: Final = PurePosixPath("/etc/greeter/kafka")
BROKER_HOST: Final = "kafka"  # the broker's compose service: its certificate's name inside the network
LOGINS: Final = (ADMIN, RUNTIME, GENERATOR, CONSUMER)
# The librdkafka clients: the ACL job (admin), the generator and the consumer. The runtime (Java) has a JAAS file.
CLIENT_FILES: Final = (ADMIN, GENERATOR, CONSUMER)


@dataclass(frozen=True)
class ComposeKafkaFiles:
    """The files of one folder made by `make`, by role."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA every client trusts (not a secret)."""
        return self.directory / "ca.pem"

    @property
    def key_store(self) -> Path:
        """The broker's key, certificate and CA in one PEM file (ssl.keystore.type=PEM)."""
        return self.directory / "broker.pem"

    @property
    def broker_jaas(self) -> Path:
        """The broker's logins, named by KAFKA_OPTS."""
        return self.directory / "broker.jaas"

    @property
    def scram_argfile(self) -> Path:
        """StorageTool format with every SCRAM user: `kafka-run-class.sh @FILE --cluster-id ID --config FILE`."""
        return self.directory / "scram-users.args"

    @property
    def admin_jaas(self) -> Path:
        """The topics job's login (admin)."""
        return self.directory / "admin.jaas"

    @property
    def runtime_jaas(self) -> Path:
        """The runtime's login, named by env.java.opts.taskmanager."""
        return self.directory / "runtime.jaas"

    def client_file(self, principal: str) -> Path:
        """The credentials file of a librdkafka client (`--kafka-client-config`)."""
        return self.directory / f"{principal}.properties"

    @property
    def all(self) -> tuple[Path, ...]:
        """Every file `make` writes."""
        fixed = (self.ca, self.key_store, self.broker_jaas, self.scram_argfile, self.admin_jaas, self.runtime_jaas)
        return fixed + tuple(map(self.client_file, CLIENT_FILES))


# The same files, where the containers see them.
IN_CONTAINER: Final = ComposeKafkaFiles(Path(CONTAINER_DIR))


def broker_jaas_text(admin: KafkaSecurity, controller_password: str) -> str:
    """The broker's JAAS file: its client login on the SASL_SSL listeners (every listener but the controller's
    uses the plain `KafkaServer` entry), the controller listener's PLAIN login, and `KafkaClient` as admin for the
    tools run in its container (the health check).
    """
    return (
        f"KafkaServer {{\n  {broker_login(str(admin.password))}\n}};\n"
        f"controller.KafkaServer {{\n  {controller_login(controller_password)}\n}};\n"
    ) + admin.jaas_file_text()


def make(directory: Path, *, world_readable: bool = False) -> ComposeKafkaFiles:
    """New TLS material and new passwords for every login in `directory` (0700), every file its owner's only
    unless `world_readable` (0644): the images run as other users than the files' owner (apache/kafka as 1000,
    apache/flink-statefun as 9999, the greeter image as 10001), and a bind-mounted file is opened inside the
    container without passing through its folder, so the folder keeps other users of this machine out either way.
    """
    files = ComposeKafkaFiles(directory)
    mint_kafka(directory, [BROKER_HOST])
    logins = {principal: KafkaSecurity(PROTOCOL, MECHANISM, principal, new_password()) for principal in LOGINS}
    for principal in CLIENT_FILES:
        logins[principal].write_client_file(files.client_file(principal))
    write_secret(files.broker_jaas, broker_jaas_text(logins[ADMIN], new_password()))
    write_secret(files.admin_jaas, logins[ADMIN].jaas_file_text())
    write_secret(files.runtime_jaas, logins[RUNTIME].jaas_file_text())
    # The main class and `format` lead: the launcher expands an argument file only before the main class.
    arguments = [STORAGE_TOOL, "format", *scram_users_arguments(logins.values())]
    write_secret(files.scram_argfile, java_argfile_text(arguments))
    for path in files.all:
        path.chmod(0o644 if world_readable or path == files.ca else 0o600)
    return files


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy_render.compose_kafka",
        description="Make the files docker-compose.kafka-sasl.yml mounts: the broker's certificate and key store, "
        "new passwords for every login (admin, runtime, generator, consumer) in JAAS, credentials and SCRAM files. "
        "For the compose stack: python -m deploy_render.compose_kafka deploy/compose/kafka-auth --world-readable",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="created if missing; earlier files replaced")
    parser.add_argument(
        "--world-readable",
        action="store_true",
        help="files 0644 instead of 0600, for containers that bind-mount them and run as another user (every "
        "image of the compose stack does); DIR stays 0700",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m deploy_render.compose_kafka DIR`: make the files and print their paths; refuses a folder holding
    others. Returns the exit code.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if directory.exists():
        if not directory.is_dir():
            parser.error(f"{directory} is not a folder")
        ours = {path.name for path in ComposeKafkaFiles(directory).all}
        others = sorted(path.name for path in directory.iterdir() if path.name not in ours)
        if others:  # make changes the folder's mode and replaces files: only in a folder of its own
            parser.error(f"{directory} holds other files than those made here ({', '.join(others[:5])})")
    for path in make(directory, world_readable=args.world_readable).all:
        print(path)
    print(
        "new passwords: a broker whose storage was formatted with earlier ones refuses them; start it on a new "
        "volume (docker compose down --volumes)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
