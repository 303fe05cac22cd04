"""deploy/k8s against a secured Kafka, for tests/k8s/test_secured_kafka.py: the user's kustomization (the demo, the
test's SASL_SSL broker overlays/kafka-sasl, their copy of components/registry and components/kafka-sasl) with every
secret made as deploy/k8s/README.md says, from files in the kustomization's folder (a `secretGenerator`), and the
broker's ACLs created through a port-forward as its admin, from stack/kafka_auth.py's grants.

The files hold passwords: they are written owner-only into run/ (ignored by git), never into the repository.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# re-exported by confluent_kafka.admin without __all__
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from certs.tls import mint_kafka
from clitools.kafka_security import KafkaSecurity, write_secret
from deploy_render import manifests
from stack.kafka_auth import (
    ACLS,
    ADMIN,
    CONSUMER,
    CONTROLLER,
    GENERATOR,
    MECHANISM,
    PROTOCOL,
    RUNTIME,
    TOPICS_JOB,
    TOPICS_JOB_ACLS,
    TOPICS_WAIT_ACLS,
    Grant,
    bindings,
)

from .demo import K8S, write_registry_component

NAMESPACE: Final = "greeter-sasl"
OVERLAY: Final = Path(__file__).parent / "overlays" / "kafka-sasl"
BROKER_DIR: Final = Path("/etc/kafka/broker")  # where overlays/kafka-sasl mounts the kafka-broker Secret
# Every login the broker knows (SCRAM users made at format), each client's own; `admin` creates the ACLs only.
PRINCIPALS: Final = (ADMIN, RUNTIME, TOPICS_JOB, GENERATOR, CONSUMER)
# The grants of the principals that exist here (the local stack's `monitor` does not).
GRANTS: Final = tuple(grant for grant in (*ACLS, *TOPICS_JOB_ACLS, *TOPICS_WAIT_ACLS) if grant.principal in PRINCIPALS)
# Each client's Secret (deploy/k8s/README.md, "A secured Kafka"): its name's principal, and which files it holds.
SECRETS: Final = {
    RUNTIME: ("client.jaas",),
    TOPICS_JOB: ("client.jaas",),
    GENERATOR: ("client.jaas", "client.properties"),
    CONSUMER: ("client.properties",),
}


@dataclass(frozen=True)
class SecuredKafka:
    """The user's kustomization in `folder` and what the machine's clients need: the CA and every password."""

    folder: Path
    ca: Path
    passwords: dict[str, str] = field(repr=False)

    def security(self, principal: str) -> KafkaSecurity:
        """`principal`'s login, trusting the broker's CA (for a client on this machine, through a port-forward)."""
        return KafkaSecurity(PROTOCOL, MECHANISM, principal, self.passwords[principal], self.ca)


def server_properties(kafka_port: int, passwords: dict[str, str]) -> str:
    """The broker's configuration: the test Kafka of ../kafka (one node, a transaction log of one replica, the
    egress's timeout allowed), with the local stack's security (stack/kafka_auth.listener_settings): SASL_SSL with
    SCRAM for the pods (INTERNAL, `kafka:9092`) and for this machine through `kubectl port-forward` (EXTERNAL,
    127.0.0.1:`kafka_port`), the controller on loopback with a static PLAIN login, nothing allowed without an ACL.
    """
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    controller = passwords[CONTROLLER]
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@localhost:9093",
        "controller.listener.names": "CONTROLLER",
        "listeners": "INTERNAL://:9092,CONTROLLER://localhost:9093,EXTERNAL://:9094",
        "advertised.listeners": f"INTERNAL://kafka:9092,EXTERNAL://127.0.0.1:{kafka_port}",
        "listener.security.protocol.map": "INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.internal.scram-sha-512.sasl.jaas.config":
            f'{scram} required username="{ADMIN}" password="{passwords[ADMIN]}";',
        "listener.name.external.scram-sha-512.sasl.jaas.config": f"{scram} required;",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'{plain} required username="{CONTROLLER}" password="{controller}" user_{CONTROLLER}="{controller}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(BROKER_DIR / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(BROKER_DIR / "ca.pem"),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN};User:{CONTROLLER}",
        "log.dirs": "/var/lib/kafka/data",
        "num.partitions": "4",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "transaction.max.timeout.ms": "1800000",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": "1049600",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "default.replication.factor": "1",
    }  # fmt: skip
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def format_arguments(passwords: dict[str, str]) -> str:
    """The storage format's Java argument file (the whole command, as stack/kafka.py's: an argument file is read
    only before the main class): a new cluster id, and a SCRAM user per principal."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: the tool would read a leading "-" as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    arguments = [
        "-cp", "/opt/kafka/libs/*", "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
        "--config", str(BROKER_DIR / "server.properties"), "--ignore-formatted",
    ]  # fmt: skip
    for principal in PRINCIPALS:
        arguments += ["--add-scram", f"{MECHANISM}=[name={principal},password={passwords[principal]}]"]
    return "".join(f'"{argument}"\n' for argument in arguments)


def write_kustomization(folder: Path, kafka_port: int) -> SecuredKafka:
    """The user's kustomization in `folder` (emptied first), namespace NAMESPACE: the demo with components/kafka-sasl,
    the test's broker, and the Secrets and CA ConfigMap the README lists, generated from files written here."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    folder.chmod(0o700)
    passwords = {principal: secrets.token_urlsafe(24) for principal in (*PRINCIPALS, CONTROLLER)}
    ca, key_store = mint_kafka(folder / "tls", ["kafka", f"kafka.{NAMESPACE}.svc"])
    shutil.copy2(ca, folder / "ca.pem")
    write_secret(folder / "broker.pem", key_store.read_text())
    write_secret(folder / "server.properties", server_properties(kafka_port, passwords))
    write_secret(folder / "format.args", format_arguments(passwords))
    kafka = SecuredKafka(folder, ca, passwords)
    generated = []
    for principal, keys in SECRETS.items():
        security = kafka.security(principal)
        if "client.jaas" in keys:
            write_secret(folder / f"{principal}.jaas", security.jaas_file_text())
        if "client.properties" in keys:
            # As the README's recipe writes it: the CA where the pods mount the greeter-kafka-ca ConfigMap.
            client = security.librdkafka() | {"ssl.ca.location": str(manifests.KAFKA_CA_FILE)}
            write_secret(folder / f"{principal}.properties", "".join(f"{k}={v}\n" for k, v in client.items()))
        files = "".join(f"      - {key}={principal}.{key.split('.')[1]}\n" for key in keys)
        # The consumer's Secret and the CA keep their names: `kubectl run` names them (README), not a manifest.
        fixed = "    options:\n      disableNameSuffixHash: true\n" if principal == CONSUMER else ""
        generated.append(f"  - name: greeter-kafka-{principal}\n    files:\n{files}{fixed}")
    registry = write_registry_component(folder)
    (folder / "kustomization.yaml").write_text(
        f"""\
# Written by tests/k8s/secured_kafka.py: the demo against a secured in-cluster Kafka, as deploy/k8s/README.md says.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {NAMESPACE}
resources:
  - {os.path.relpath(K8S / "overlays" / "demo", folder)}
  - {os.path.relpath(OVERLAY, folder)}
components:
  - {registry}
  - {os.path.relpath(K8S / manifests.KAFKA_SASL_COMPONENT, folder)}
secretGenerator:
  - name: kafka-broker
    files:
      - server.properties
      - format.args
      - broker.pem
      - ca.pem
{"".join(generated)}configMapGenerator:
  - name: greeter-kafka-ca
    files:
      - ca.pem
    options:
      disableNameSuffixHash: true
"""
    )
    return kafka


def create_acls(kafka: SecuredKafka, bootstrap: str, grants: tuple[Grant, ...] = GRANTS) -> None:
    """`grants` created on the broker as its admin (creating an existing one changes nothing)."""
    client = AdminClient({"bootstrap.servers": bootstrap, **kafka.security(ADMIN).librdkafka()})
    for binding, future in client.create_acls(bindings(grants), request_timeout=30).items():
        try:
            future.result()
        except Exception as error:  # a KafkaException: the binding it was for
            raise AssertionError(f"creating the ACL {binding} failed: {error}") from error


def consumer_overrides(name: str, image: str, args: Sequence[str]) -> str:
    """`kubectl run --overrides` of deploy/k8s/README.md's consumer on a secured Kafka, running `args`: the
    consumer's Secret and the CA mounted, GREETER_KAFKA_CLIENT_CONFIG (its --kafka-client-config) naming the
    credentials file. The overrides are a JSON merge patch, which replaces the container list: the arguments too."""
    return json.dumps(
        {
            "spec": {
                "securityContext": {"fsGroup": 10001},
                "containers": [
                    {
                        "name": name,
                        "image": image,
                        "args": list(args),
                        "env": [
                            {
                                "name": "GREETER_BOOTSTRAP_SERVERS",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "greeter-kafka", "key": "GREETER_BOOTSTRAP_SERVERS"}
                                },
                            },
                            {"name": "GREETER_KAFKA_CLIENT_CONFIG", "value": str(manifests.KAFKA_CLIENT_CONFIG)},
                        ],
                        "volumeMounts": [
                            {"name": "login", "mountPath": str(manifests.KAFKA_LOGIN_DIR)},
                            {"name": "ca", "mountPath": str(manifests.KAFKA_CA_DIR)},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "login", "secret": {"secretName": f"greeter-kafka-{CONSUMER}", "defaultMode": 0o440}},
                    {"name": "ca", "configMap": {"name": "greeter-kafka-ca", "optional": True}},
                ],
            }
        }
    )
