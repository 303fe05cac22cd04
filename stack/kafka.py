"""The single-node KRaft broker: its properties, storage, command line, topics and the ingress lag."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

# re-exported by confluent_kafka.admin without __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    OffsetSpec,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from clitools.kafka_security import write_secret
from greeter.config.wiring import NAMES_TOPIC

from . import kafka_auth
from .config import HOST, INGRESS_GROUP, TOPICS, StackConfig
from .readiness import port_open

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def broker_settings(config: StackConfig) -> list[tuple[str, str, str]]:
    """What the broker must be for the pipeline: the same in every stack (local, compose)."""
    return [
        ("process.roles", "broker,controller", "one KRaft node is both"),
        ("node.id", "1", "the only voter"),
        ("controller.listener.names", "CONTROLLER", "required in KRaft"),
        ("num.partitions", str(config.partitions), "the stack creates its topics explicitly; same count"),
        ("auto.create.topics.enable", "false", "a typo in a topic name must fail, not create a topic"),
        ("offsets.topic.replication.factor", "1", "one broker: the default 3 cannot be met"),
        ("offsets.topic.num.partitions", "4", "the default 50 slows the first group join on one node"),
        ("transaction.state.log.replication.factor", "1", "one broker: exactly-once needs the txn log"),
        ("transaction.state.log.min.isr", "1", "one broker"),
        ("transaction.state.log.num.partitions", "4", "the default 50 slows the first transaction"),
        (
            "transaction.max.timeout.ms",
            str(30 * 60 * 1000),
            "module.yaml's egress asks 15min; headroom so raising it does not fail the producers",
        ),
        ("group.initial.rebalance.delay.ms", "0", "no 3 s wait before the first consumer gets partitions"),
        ("message.max.bytes", str(config.max_message_bytes + 1024), "topic limit plus batch overhead"),
        (
            "log.cleaner.dedupe.buffer.size",
            str(config.kafka_cleaner_buffer_bytes),
            "the compaction map, on the heap from start: the default 128 MiB was most of what the broker used; 16 MiB "
            "maps ~0.6 M keys per pass, more than the compacted internal topics hold",
        ),
    ]


def server_properties(config: StackConfig) -> str:
    """The local broker's server.properties: broker_settings, loopback listeners, the run folder's log dir."""
    p = config.ports
    local = [
        ("controller.quorum.voters", f"1@{HOST}:{p.kafka_controller}", "a quorum of one"),
        ("log.dirs", str(config.kafka_data_dir), "under the run folder"),
    ]
    if kafka_auth.secured(config):
        local += kafka_auth.listener_settings(config)
    else:
        local += [
            ("listeners", f"PLAINTEXT://{HOST}:{p.kafka},CONTROLLER://{HOST}:{p.kafka_controller}", "loopback only"),
            ("advertised.listeners", f"PLAINTEXT://{HOST}:{p.kafka}", "clients reconnect to what is advertised"),
            ("inter.broker.listener.name", "PLAINTEXT", "required with a named controller listener"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT", "local and loopback only"),
        ]
    overrides = dict(config.kafka_overrides)
    settings = [(key, overrides.pop(key, value), why) for key, value, why in broker_settings(config) + local]
    settings += [
        (key, value, "set over the stack's own (StackConfig.kafka_overrides)") for key, value in overrides.items()
    ]
    lines = ["# Rendered by stack/kafka.py for the local stack."]
    for key, value, why in settings:
        lines += [f"# {why}", f"{key}={value}"]
    return "\n".join(lines) + "\n"


def cluster_id() -> str:
    """A Kafka Uuid string as StorageTool random-uuid prints it: base64url of 16 bytes, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids a command line would read as an option
            return text


def write_properties(config: StackConfig) -> None:
    """Write server.properties into the conf folder, its owner's only (the secured broker's logins are in it)."""
    write_secret(config.conf_dir / "server.properties", server_properties(config))


def storage_formatted(config: StackConfig) -> bool:
    """Whether the log dir is formatted (KRaft needs it once)."""
    return (config.kafka_data_dir / "meta.properties").exists()


def classpath(config: StackConfig) -> str:
    """The broker's lib folder as a JVM classpath wildcard."""
    return str(config.lib_kafka / "*")


def format_storage(java: str, config: StackConfig) -> bool:
    """Format the log dir once (KRaft needs it), creating the secured broker's SCRAM users; True if it was
    formatted now.
    """
    if storage_formatted(config):
        return False
    arguments = [
        "-cp",
        classpath(config),
        f"-Dlog4j.configuration=file:{config.conf_dir}/kafka-log4j.properties",
        STORAGE_TOOL,
        "format",
        "-t",
        cluster_id(),
        "-c",
        str(config.conf_dir / "server.properties"),
    ]
    if kafka_auth.secured(config):
        arguments += kafka_auth.scram_arguments(config)
    # The arguments go in a Java argument file (the launcher reads it; `ps` shows only its name): they hold the
    # SCRAM passwords.
    argfile = config.conf_dir / "kafka-format.args"
    write_secret(argfile, java_argfile_text(arguments))
    try:
        result = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True, check=False)
    finally:
        argfile.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"Kafka storage format failed ({java} {STORAGE_TOOL}):\n{result.stdout}{result.stderr}")
    return True


def java_argfile_text(arguments: Iterable[str]) -> str:
    """A Java launcher argument file (`java @FILE`) holding `arguments`, one quoted per line."""
    return "".join(f'"{argument}"\n' for argument in arguments)


def heap_options(config: StackConfig) -> list[str]:
    """The broker's heap, the same in every stack (compose passes it as KAFKA_HEAP_OPTS)."""
    return [f"-Xms{config.kafka_heap}", f"-Xmx{config.kafka_heap}"]


def argv(java: str, config: StackConfig) -> list[str]:
    """The broker's JVM command line, with kafka-server-start's heap and GC flags, and KAFKA_OPTS from the
    environment as Kafka's scripts (and so the compose stack's image) pass it: extra JVM options, e.g. a profiler's.
    """
    return [
        java,
        *heap_options(config),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",  # kafka-server-start's GC settings
        *shlex.split(os.environ.get("KAFKA_OPTS", "")),
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{config.conf_dir}/kafka-log4j.properties",
        "-cp",
        classpath(config),
        MAIN_CLASS,
        str(config.conf_dir / "server.properties"),
    ]


def admin(config: StackConfig, principal: str = kafka_auth.ADMIN) -> AdminClient:
    """An AdminClient for the stack's broker, logged in as `principal` on the secured one: 5 s socket timeout,
    errors only in its log.
    """
    security = kafka_auth.client_security(config, principal)
    # log_level 3: errors only; librdkafka info lines on stderr would garble `status`
    return AdminClient(
        {
            "bootstrap.servers": config.bootstrap_servers,
            "socket.timeout.ms": 5000,
            "log_level": 3,
            **(security.librdkafka() if security else {}),
        }
    )


def broker_ready(config: StackConfig) -> str | None:
    """Ready when the port answers and the broker serves metadata."""
    closed = port_open(HOST, config.ports.kafka)
    if closed:
        return closed
    metadata = admin(config).list_topics(timeout=3)
    if not metadata.brokers:
        return "no broker in the metadata yet"
    ours = formatted_cluster_id(config)
    if metadata.cluster_id != ours:  # someone else's broker on our port
        return f"the broker on port {config.ports.kafka} is cluster {metadata.cluster_id}, ours is {ours}"
    return None


def formatted_cluster_id(config: StackConfig) -> str | None:
    """The cluster.id StorageTool wrote into our log dir."""
    meta = config.kafka_data_dir / "meta.properties"
    for line in meta.read_text().splitlines() if meta.exists() else ():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


def ensure_topics(config: StackConfig, names: Iterable[str] = TOPICS) -> None:
    """Create the topics that are missing (idempotent), with the stack's partitions and record size bound."""
    client = admin(config)
    existing = client.list_topics(timeout=5).topics
    wanted = [
        NewTopic(
            name,
            num_partitions=config.partitions,
            replication_factor=1,
            config={"max.message.bytes": str(config.max_message_bytes)},
        )
        for name in names
        if name not in existing
    ]
    for name, future in client.create_topics(wanted, request_timeout=15).items() if wanted else ():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise RuntimeError(f"creating topic {name!r} failed: {error}") from error


def ensure_acls(config: StackConfig) -> None:
    """Create every client's ACLs on the secured broker (creating an existing one changes nothing)."""
    create_acls(admin(config))


def create_acls(client: AdminClient) -> None:
    """Create every client's ACLs (stack/kafka_auth.ACLS) through `client`, logged in as a super user."""
    results = client.create_acls(kafka_auth.bindings(), request_timeout=15)
    for binding, future in results.items():
        try:
            future.result()
        except KafkaException as error:
            raise RuntimeError(f"creating the ACL {binding} failed: {error}") from error


def rotate_logins(config: StackConfig) -> list[str]:
    """New passwords for the secured broker's client logins (kafka_auth.ROTATED): the broker takes each (as a
    SCRAM credential, the admin logged in), then its credential file is rewritten. Connections open with the old
    password stay open: Kafka checks a login when a connection starts. The principals rotated.
    """
    logins = kafka_auth.new_logins(config)
    client = admin(config)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            principal,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, kafka_auth.SCRAM_ITERATIONS),
            str(security.password).encode(),
        )
        for principal, security in logins.items()
    ]
    for principal, future in client.alter_user_scram_credentials(upserts, request_timeout=15).items():
        try:
            future.result()
        except KafkaException as error:
            raise RuntimeError(f"the broker refused {principal}'s new password: {error}") from error
    kafka_auth.write_logins(config, logins)
    return list(logins)


def topics_ready(config: StackConfig) -> str | None:
    """None when every topic exists and each of its partitions has a leader, else what is missing."""
    topics = admin(config).list_topics(timeout=3).topics
    for name in TOPICS:
        if name not in topics:
            return f"topic {name!r} missing"
        partitions = topics[name].partitions
        if len(partitions) < 1 or any(p.leader < 0 for p in partitions.values()):
            return f"topic {name!r} has partitions without a leader"
    return None


@dataclass(frozen=True)
class Lag:
    """The consumer group's lag on a topic, in total and per partition."""

    total: int
    per_partition: dict[int, int]
    committed: bool  # False: the group has committed nothing yet, the lag is the topic's size


def ingress_lag(config: StackConfig, group: str = INGRESS_GROUP, topic: str = NAMES_TOPIC) -> Lag:
    """End offsets minus the group's committed offsets. StateFun's FlinkKafkaConsumer commits them to
    Kafka on each completed checkpoint (for monitoring only: it restores from its checkpoint).
    """
    closed = port_open(HOST, config.ports.kafka)
    if closed:  # else librdkafka retries and logs a line every 50 ms
        raise RuntimeError(closed)
    client = admin(config, kafka_auth.MONITOR)
    partitions = sorted(client.list_topics(topic, timeout=5).topics[topic].partitions)
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])]
    committed_result: Any = client.list_consumer_group_offsets(request)[group].result()
    committed = {tp.partition: tp.offset for tp in committed_result.topic_partitions}
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    ends = client.list_offsets({TopicPartition(topic, p): latest for p in partitions})
    lag: dict[int, int] = {}
    for tp, future in ends.items():
        end = future.result().offset
        done = committed.get(tp.partition, -1)
        lag[tp.partition] = end - done if done >= 0 else end
    return Lag(sum(lag.values()), lag, any(offset >= 0 for offset in committed.values()))
