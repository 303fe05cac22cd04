"""The local stack's secured Kafka (`greeter-stack up --kafka-security sasl-ssl`): who may do what, and the files
that prove it.

The broker speaks SASL_SSL with SCRAM-SHA-512 on the stack's Kafka port, with a certificate minted into the run
folder (certs/tls.py). KRaft's StandardAuthorizer refuses whatever no ACL allows. Each client is its own principal
with only what it needs (`ACLS`); `admin`, used only by `up` (readiness, topics, ACLs), and the broker's own
`controller` login are the super users.

Every secret lives in the run folder, readable by its owner only: one credentials file per client
(`kafka-clients/<principal>.properties`, what `--kafka-client-config` reads), the runtime's JAAS file, and the
broker's server.properties. The SCRAM users are created when the storage is formatted, from a Java argument file
so that no password is ever on a command line; a `--fresh` start makes new passwords.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

# re-exported by confluent_kafka.admin without __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from certs.tls import mint_kafka
from clitools.kafka_args import STACK_LOGINS
from clitools.kafka_security import KafkaSecurity, write_secret
from greeter.config.wiring import DEAD_LETTER_TOPIC, EGRESS_ID, GREETINGS_TOPIC, NAMES_TOPIC

from .config import HOST, INGRESS_GROUP, TOPICS, StackConfig
from .readiness import StartError

MECHANISM: Final = "SCRAM-SHA-512"
SCRAM_ITERATIONS: Final = 4096  # StorageTool's default for --add-scram
PROTOCOL: Final = "SASL_SSL"

ADMIN: Final = "admin"  # super user: `up` only (readiness, topics, ACLs)
RUNTIME: Final = "runtime"  # the StateFun job's ingress and egress
GENERATOR: Final = "generator"
CONSUMER: Final = "consumer"
MONITOR: Final = "monitor"  # `greeter-stack status`: the ingress group's lag
CLIENTS: Final = (ADMIN, RUNTIME, GENERATOR, CONSUMER, MONITOR)
CONTROLLER: Final = "controller"  # the broker's login to its own KRaft controller listener

# greeter-consumer's group ids (consumer/reading/topics.py): one per run, under this prefix.
CONSUMER_GROUP_PREFIX: Final = "greeter-consumer-"


def transactional_id_prefix(egress_id: str = EGRESS_ID) -> str:
    """The start of every transactional id the exactly-once egress uses.

    StateFun 3.3 sets no prefix, so Flink's FlinkKafkaProducer takes its default: the name of the task the sink
    is chained into, then the operator's id (`feedback-union -> functions -> Sink: example-greets-egress-<uid>-<n>`).
    The task is StateFun's feedback union and function operators (StatefulFunctionsJobConstants), the sink is
    named by the egress id (Sinks: `<namespace>-<name>-egress`).
    """
    namespace, _, name = egress_id.partition("/")
    return f"feedback-union -> functions -> Sink: {namespace}-{name}-egress-"


@dataclass(frozen=True)
class Grant:
    """One ACL: `principal` may do `operation` on a resource named `name` (or every name starting with it)."""

    principal: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, DESCRIBE_CONFIGS (AclOperation's names)
    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID (ResourceType's names)
    name: str
    prefixed: bool = False

    def binding(self) -> AclBinding:
        """The binding the admin API creates."""
        return AclBinding(
            ResourceType[self.resource],
            self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            f"User:{self.principal}",
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )


# Least privilege: READ and WRITE imply DESCRIBE; none may create, delete or alter anything.
ACLS: Final = (
    Grant(RUNTIME, "READ", "TOPIC", NAMES_TOPIC),
    Grant(RUNTIME, "READ", "GROUP", INGRESS_GROUP),
    Grant(RUNTIME, "WRITE", "TOPIC", GREETINGS_TOPIC),
    Grant(RUNTIME, "WRITE", "TOPIC", DEAD_LETTER_TOPIC),
    Grant(RUNTIME, "WRITE", "TRANSACTIONAL_ID", transactional_id_prefix(), prefixed=True),
    Grant(GENERATOR, "WRITE", "TOPIC", NAMES_TOPIC),
    Grant(CONSUMER, "READ", "TOPIC", GREETINGS_TOPIC),
    Grant(CONSUMER, "READ", "TOPIC", DEAD_LETTER_TOPIC),
    Grant(CONSUMER, "READ", "TOPIC", NAMES_TOPIC),  # verify --from-names
    Grant(CONSUMER, "READ", "GROUP", CONSUMER_GROUP_PREFIX, prefixed=True),
    Grant(MONITOR, "DESCRIBE", "TOPIC", NAMES_TOPIC),
    Grant(MONITOR, "DESCRIBE", "GROUP", INGRESS_GROUP),
)


# deploy/k8s/components/kafka-sasl's topics Job, on a Kafka that is not the local stack's (which makes its topics as
# `admin`): its own principal, which may make the stack's topics and nothing else.
TOPICS_JOB: Final = "topics"
TOPICS_JOB_ACLS: Final = tuple(
    Grant(TOPICS_JOB, operation, "TOPIC", topic) for topic in TOPICS for operation in ("CREATE", "DESCRIBE")
)
# deploy/k8s's waits for the topics (the master's as the runtime, the demo generator's as the generator) run
# `kafka-topics.sh --describe`, which reads each topic's configuration too: refused without DescribeConfigs.
TOPICS_WAIT_ACLS: Final = (
    *(Grant(RUNTIME, "DESCRIBE_CONFIGS", "TOPIC", topic) for topic in TOPICS),
    Grant(GENERATOR, "DESCRIBE_CONFIGS", "TOPIC", NAMES_TOPIC),
)


@dataclass(frozen=True)
class KafkaAuthFiles:
    """Where a run folder keeps its Kafka credentials and the broker's TLS material."""

    run_dir: Path

    @property
    def clients_dir(self) -> Path:
        """One credentials file per client principal, and the runtime's JAAS file."""
        return self.run_dir / STACK_LOGINS  # where the CLIs look for their login (clitools/kafka_args.py)

    @property
    def tls_dir(self) -> Path:
        """The broker's CA and key store, minted on every `up`."""
        return self.run_dir / "kafka-tls"

    def client_file(self, principal: str) -> Path:
        """The credentials file of `principal`: what `--kafka-client-config` takes."""
        return self.clients_dir / f"{principal}.properties"

    @property
    def runtime_jaas(self) -> Path:
        """The runtime's JAAS file, named by -Djava.security.auth.login.config in its JVMs' options."""
        return self.clients_dir / "runtime.jaas"

    @property
    def controller_password(self) -> Path:
        """The password of the broker's controller login."""
        return self.clients_dir / "controller.password"

    @property
    def ca(self) -> Path:
        """The CA every client trusts."""
        return self.tls_dir / "ca.pem"

    @property
    def key_store(self) -> Path:
        """The broker's key, certificate and CA in one PEM file."""
        return self.tls_dir / "broker.pem"

    def security(self, principal: str) -> KafkaSecurity:
        """The client security of `principal`, read from its credentials file."""
        return KafkaSecurity.from_client_file(self.client_file(principal))


def secured(config: StackConfig) -> bool:
    """Whether `config` runs the secured broker."""
    return config.kafka_security != "none"


def client_security(config: StackConfig, principal: str) -> KafkaSecurity | None:
    """The security `principal` connects with; None for the plaintext broker."""
    return KafkaAuthFiles(config.run_dir).security(principal) if secured(config) else None


def client_settings(config: StackConfig, principal: str) -> dict[str, str]:
    """A librdkafka client's settings for the stack's broker as `principal`: its address, and on the secured
    broker that principal's login and the CA.
    """
    security = client_security(config, principal)
    return {"bootstrap.servers": config.bootstrap_servers, **(security.librdkafka() if security else {})}


def client_flags(config: StackConfig, principal: str) -> list[str]:
    """The Kafka flags a greeter CLI takes to reach the stack's broker as `principal`."""
    flags = ["--bootstrap-servers", config.bootstrap_servers]
    if secured(config):
        flags += ["--kafka-client-config", str(KafkaAuthFiles(config.run_dir).client_file(principal))]
    return flags


def prepare(config: StackConfig, storage_formatted: bool) -> bool:
    """Mint the broker's certificate; when the storage is not formatted yet, new passwords for every login.
    True if passwords were made (the format then creates their SCRAM users). StartError for a storage formatted
    without them.
    """
    files = KafkaAuthFiles(config.run_dir)
    mint_kafka(files.tls_dir)
    if storage_formatted:
        missing = [p.name for p in (*map(files.client_file, CLIENTS), files.controller_password) if not p.exists()]
        if missing:
            raise StartError(
                f"the Kafka storage in {config.kafka_data_dir} was formatted without --kafka-security sasl-ssl (no "
                f"{', '.join(missing)} in {files.clients_dir}): start with `greeter-stack up --fresh "
                "--kafka-security sasl-ssl`"
            )
        return False
    files.clients_dir.mkdir(parents=True, exist_ok=True)
    files.clients_dir.chmod(0o700)  # its owner's only, as each file in it
    for principal in CLIENTS:
        KafkaSecurity(PROTOCOL, MECHANISM, principal, new_password(), files.ca).write_client_file(
            files.client_file(principal)
        )
    write_secret(files.controller_password, new_password())
    write_secret(files.runtime_jaas, files.security(RUNTIME).jaas_file_text())
    return True


# The logins `rotate-kafka-credentials` replaces. The admin's and the controller's are the broker's own (in its
# server.properties, read at start): `up --fresh` makes new ones.
ROTATED: Final = (RUNTIME, GENERATOR, CONSUMER, MONITOR)


def new_logins(config: StackConfig, principals: Iterable[str] = ROTATED) -> dict[str, KafkaSecurity]:
    """A new password for each of `principals`, not written anywhere yet (the broker must take it first)."""
    files = KafkaAuthFiles(config.run_dir)
    return {p: dataclasses.replace(files.security(p), password=new_password()) for p in principals}


def write_logins(config: StackConfig, logins: Mapping[str, KafkaSecurity]) -> None:
    """Replace the credential files (and the runtime's JAAS file) with `logins`."""
    files = KafkaAuthFiles(config.run_dir)
    for principal, security in logins.items():
        security.write_client_file(files.client_file(principal))
        if principal == RUNTIME:
            write_secret(files.runtime_jaas, security.jaas_file_text())


def new_password() -> str:
    """A fresh password for one login."""
    return secrets.token_urlsafe(24)  # 192 bits, letters, digits, - and _: safe in JAAS and in a Java argfile


def scram_arguments(config: StackConfig) -> list[str]:
    """StorageTool format's arguments that create every client's SCRAM user (they hold the passwords)."""
    files = KafkaAuthFiles(config.run_dir)
    return scram_users_arguments(files.security(principal) for principal in CLIENTS)


def scram_users_arguments(logins: Iterable[KafkaSecurity]) -> list[str]:
    """StorageTool format's `--add-scram` arguments that create the SCRAM user of each of `logins`."""
    arguments = []
    for login in logins:
        arguments += ["--add-scram", f"{MECHANISM}=[name={login.username},password={login.password}]"]
    return arguments


PLAIN_LOGIN: Final = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN: Final = "org.apache.kafka.common.security.scram.ScramLoginModule"


def broker_login(admin_password: str) -> str:
    """The broker's own client login on its SASL_SSL listener(s), as a JAAS line: the admin super user."""
    return f'{SCRAM_LOGIN} required username="{ADMIN}" password="{admin_password}";'


def controller_login(password: str) -> str:
    """The one login of the KRaft controller listener, both sides (the node is its own client), as a JAAS line."""
    return f'{PLAIN_LOGIN} required username="{CONTROLLER}" password="{password}" user_{CONTROLLER}="{password}";'


def security_settings() -> list[tuple[str, str, str]]:
    """The secured broker's settings that every stack shares (local, compose): the mechanisms, the PEM stores'
    types, the authorizer and who is above it. No listener, path or secret.
    """
    return [
        ("sasl.enabled.mechanisms", MECHANISM, "clients log in with SCRAM"),
        ("sasl.mechanism.inter.broker.protocol", MECHANISM, "see inter.broker.listener.name"),
        ("sasl.mechanism.controller.protocol", "PLAIN", "a static login: the controller starts before any SCRAM user"),
        ("listener.name.controller.sasl.enabled.mechanisms", "PLAIN", "see sasl.mechanism.controller.protocol"),
        ("ssl.keystore.type", "PEM", "the key and its certificate chain in one PEM file"),
        ("ssl.truststore.type", "PEM", "the broker is a client of its own listener"),
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "KRaft's ACLs"),
        ("allow.everyone.if.no.acl.found", "false", "what no ACL allows is refused"),
        ("super.users", f"User:{ADMIN};User:{CONTROLLER}", "the stack's setup and the broker itself, no one else"),
    ]  # fmt: skip


def listener_settings(config: StackConfig) -> list[tuple[str, str, str]]:
    """The secured broker's listeners, logins, TLS and authorizer (server.properties entries with their why)."""
    p = config.ports
    files = KafkaAuthFiles(config.run_dir)
    admin_password = str(files.security(ADMIN).password)
    controller_password = files.controller_password.read_text(encoding="utf-8").strip()
    return [
        ("listeners", f"{PROTOCOL}://{HOST}:{p.kafka},CONTROLLER://{HOST}:{p.kafka_controller}", "loopback only"),
        ("advertised.listeners", f"{PROTOCOL}://{HOST}:{p.kafka}", "clients reconnect to what is advertised"),
        ("inter.broker.listener.name", PROTOCOL, "the broker talks to itself as the admin super user"),
        ("listener.security.protocol.map", f"CONTROLLER:SASL_PLAINTEXT,{PROTOCOL}:{PROTOCOL}",
         "with the authorizer on, a PLAINTEXT controller listener sees its own node as User:ANONYMOUS and refuses "
         "it forever; loopback only, so SASL without TLS there"),
        ("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", broker_login(admin_password),
         "the broker's own client login"),
        ("listener.name.controller.plain.sasl.jaas.config", controller_login(controller_password),
         "the one controller login, both sides"),
        ("ssl.keystore.location", str(files.key_store), "minted by certs/tls.py on every up"),
        ("ssl.truststore.location", str(files.ca), "the CA of the key store"),
        *security_settings(),
    ]  # fmt: skip


def runtime_jvm_options(config: StackConfig) -> str:
    """The runtime's JVM option naming its JAAS file (Kafka's Java clients read it when sasl.jaas.config is
    unset, so module.yaml holds no secret); empty for the plaintext broker.
    """
    return jaas_option(KafkaAuthFiles(config.run_dir).runtime_jaas) if secured(config) else ""


def jaas_option(jaas_file: PurePath) -> str:
    """The JVM option that names a JAAS file (the logins of the JVM's Kafka clients or broker)."""
    return f"-Djava.security.auth.login.config={jaas_file}"


def bindings(grants: Iterable[Grant] = ACLS) -> list[AclBinding]:
    """The admin API's bindings of `grants`."""
    return [grant.binding() for grant in grants]
