"""The local KRaft brokers (one, or three voters): their properties, storage, command lines, topics, and the
ingress lag.
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
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
from .config import BROKER_COUNTS, HOST, INGRESS_GROUP, TOPICS, StackConfig
from .readiness import port_open

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


BROKER = "kafka"
"""The first broker's process name; the others are kafka-2 and kafka-3 (broker_name)."""


EVERY_BROKER_NUMBER = range(1, max(BROKER_COUNTS) + 1)
"""The numbers any stack's brokers can have, whatever its --brokers."""


def broker_name(number: int) -> str:
    """The process name of broker `number`: kafka, kafka-2, kafka-3."""
    return BROKER if number == 1 else f"{BROKER}-{number}"


def broker_names(config: StackConfig) -> tuple[str, ...]:
    """The stack's broker processes, in start order."""
    return tuple(broker_name(n) for n in config.broker_numbers)


def broker_number(name: str) -> int:
    """The node id of broker process `name` (broker_name's inverse)."""
    return 1 if name == BROKER else int(name.removeprefix(f"{BROKER}-"))


def broker_cgroup(config: StackConfig, name: str) -> str | None:
    """The cgroup v2 path process `name` is started in when it is a broker and config.broker_cgroup is set:
    <broker_cgroup>/broker-<number>; None otherwise.
    """
    if config.broker_cgroup is None or name not in broker_names(config):
        return None
    return f"{config.broker_cgroup}/broker-{broker_number(name)}"


def min_insync_replicas(config: StackConfig) -> int:
    """2 of 3: an acknowledged write survives the loss of any one broker, and one broker may be down for writes
    to go on; a single broker can only ask for itself.
    """
    return 2 if config.brokers >= 3 else 1


def broker_settings(config: StackConfig) -> list[tuple[str, str, str]]:
    """What every broker must be for the pipeline: the same in every stack (local, compose) for one broker."""
    replicas, min_isr = str(config.brokers), str(min_insync_replicas(config))
    # Kafka's defaults for both are 1, what one broker needs: set only for three.
    replication = [
        ("default.replication.factor", replicas, "every broker holds every partition"),
        ("min.insync.replicas", min_isr, "an acknowledged write is on two brokers, and one may be down"),
    ]
    return [
        ("process.roles", "broker,controller",
         "each node both: a three-voter quorum without three more JVMs on a 2-core machine"),
        ("controller.listener.names", "CONTROLLER", "required in KRaft"),
        ("num.partitions", str(config.partitions), "the stack creates its topics explicitly; same count"),
        ("auto.create.topics.enable", "false", "a typo in a topic name must fail, not create a topic"),
        *(replication if config.brokers > 1 else []),
        ("offsets.topic.replication.factor", replicas, "on every broker (the default 3 cannot be met by one)"),
        ("offsets.topic.num.partitions", "4", "the default 50 slows the first group join on one node"),
        ("transaction.state.log.replication.factor", replicas, "exactly-once needs the txn log: on every broker"),
        ("transaction.state.log.min.isr", min_isr, "as min.insync.replicas"),
        ("transaction.state.log.num.partitions", "4", "the default 50 slows the first transaction"),
        (
            "transaction.max.timeout.ms",
            str(30 * 60 * 1000),
            "module.yaml's egress asks 15min; headroom so raising it does not fail the producers",
        ),
        ("group.initial.rebalance.delay.ms", "0", "no 3 s wait before the first consumer gets partitions"),
        # A broker back from kill -9 is refused (DUPLICATE_BROKER_REGISTRATION) until the controller drops its old
        # registration, one session timeout (Kafka's 9 s) after the controller last heard of it; a dead broker of
        # three is fenced out of the ISR after the same wait. Availability only: replication and transactions do
        # not depend on it. RELIABILITY.md, "Where a recovery's seconds go".
        ("broker.heartbeat.interval.ms", "500",
         "Kafka's 2000: six heartbeats per session timeout, so one late on a loaded machine fences nothing"),
        ("broker.session.timeout.ms", "3000",
         "Kafka's 9000: a broker respawned after kill -9 registers, and a dead one is fenced, 6 s sooner"),
        ("message.max.bytes", str(config.max_message_bytes + 1024), "topic limit plus batch overhead"),
        (
            "log.cleaner.dedupe.buffer.size",
            str(config.kafka_cleaner_buffer_bytes),
            "the compaction map, on the heap from start: the default 128 MiB was most of what the broker used; 16 MiB "
            "maps ~0.6 M keys per pass, more than the compacted internal topics hold",
        ),
    ]  # fmt: skip


def quorum_voters(config: StackConfig) -> str:
    """controller.quorum.voters: every broker's controller listener, by node id."""
    return ",".join(f"{n}@{HOST}:{config.ports.broker(n)[1]}" for n in config.broker_numbers)


def server_properties(config: StackConfig, number: int = 1) -> str:
    """Broker `number`'s server.properties: broker_settings, its node id, loopback listeners, its own log dir."""
    port, controller_port = config.ports.broker(number)
    local = [
        ("node.id", str(number), "a voter of the quorum, and a broker"),
        ("controller.quorum.voters", quorum_voters(config), "every node"),
        ("log.dirs", str(config.broker_data_dir(number)), "under the run folder"),
    ]
    if kafka_auth.secured(config):
        local += kafka_auth.listener_settings(config)
    else:
        local += [
            ("listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}", "loopback only"),
            ("advertised.listeners", f"PLAINTEXT://{HOST}:{port}", "clients reconnect to what is advertised"),
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


def properties_file(config: StackConfig, number: int) -> Path:
    """Broker `number`'s server.properties in the conf folder: server.properties, server-2.properties, ..."""
    return config.conf_dir / ("server.properties" if number == 1 else f"server-{number}.properties")


def cluster_id() -> str:
    """A Kafka Uuid string as StorageTool random-uuid prints it: base64url of 16 bytes, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids a command line would read as an option
            return text


def write_properties(config: StackConfig) -> None:
    """Write each broker's server.properties into the conf folder, its owner's only (the secured broker's logins
    are in it).
    """
    for number in config.broker_numbers:
        write_secret(properties_file(config, number), server_properties(config, number))


def storage_formatted(config: StackConfig, number: int = 1) -> bool:
    """Whether broker `number`'s log dir is formatted (KRaft needs it once)."""
    return (config.broker_data_dir(number) / "meta.properties").exists()


def formatted_broker_count(config: StackConfig) -> int | None:
    """How many brokers the run folder's Kafka storage was made for (the highest formatted broker's number);
    None when none is formatted.
    """
    formatted = [n for n in EVERY_BROKER_NUMBER if storage_formatted(config, n)]
    return max(formatted) if formatted else None


def classpath(config: StackConfig) -> str:
    """The broker's lib folder as a JVM classpath wildcard."""
    return str(config.lib_kafka / "*")


def format_storage(java: str, config: StackConfig) -> bool:
    """Format each broker's log dir once (KRaft needs it), all with one cluster id, creating the secured broker's
    SCRAM users; True if any was formatted now.
    """
    unformatted = [n for n in config.broker_numbers if not storage_formatted(config, n)]
    if not unformatted:
        return False
    ids = {found for n in config.broker_numbers if (found := formatted_cluster_id(config, n))}
    if len(ids) > 1:
        raise RuntimeError(f"the brokers' log dirs in {config.run_dir} hold different cluster ids: start with --fresh")
    the_id = ids.pop() if ids else cluster_id()
    for number in unformatted:
        _format(java, config, number, the_id)
    return True


def _format(java: str, config: StackConfig, number: int, the_id: str) -> None:
    arguments = [
        "-cp",
        classpath(config),
        f"-Dlog4j.configuration=file:{config.conf_dir}/kafka-log4j.properties",
        STORAGE_TOOL,
        "format",
        "-t",
        the_id,
        "-c",
        str(properties_file(config, number)),
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


def java_argfile_text(arguments: Iterable[str]) -> str:
    """A Java launcher argument file (`java @FILE`) holding `arguments`, one quoted per line."""
    return "".join(f'"{argument}"\n' for argument in arguments)


def heap_options(config: StackConfig) -> list[str]:
    """The broker's heap, the same in every stack (compose passes it as KAFKA_HEAP_OPTS)."""
    return [f"-Xms{config.kafka_heap}", f"-Xmx{config.kafka_heap}"]


def argv(java: str, config: StackConfig, number: int = 1) -> list[str]:
    """Broker `number`'s JVM command line, with kafka-server-start's heap and GC flags, and KAFKA_OPTS from the
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
        str(properties_file(config, number)),
    ]


def admin(config: StackConfig, principal: str = kafka_auth.ADMIN, bootstrap: str | None = None) -> AdminClient:
    """An AdminClient for the stack's brokers (or only `bootstrap`), logged in as `principal` on the secured one:
    5 s socket timeout, errors only in its log.
    """
    security = kafka_auth.client_security(config, principal)
    # log_level 3: errors only; librdkafka info lines on stderr would garble `status`
    return AdminClient(
        {
            "bootstrap.servers": bootstrap or config.bootstrap_servers,
            "socket.timeout.ms": 5000,
            "log_level": 3,
            **(security.librdkafka() if security else {}),
        }
    )


def broker_ready(config: StackConfig, number: int = 1) -> str | None:
    """Ready when broker `number`'s port answers and it serves metadata listing itself (it has joined the
    quorum's cluster).
    """
    port = config.ports.broker(number)[0]
    closed = port_open(HOST, port)
    if closed:
        return closed
    metadata = admin(config, bootstrap=config.broker_address(number)).list_topics(timeout=3)
    if number not in metadata.brokers:
        return f"broker {number} not in its own metadata yet"
    ours = formatted_cluster_id(config, number)
    if metadata.cluster_id != ours:  # someone else's broker on our port
        return f"the broker on port {port} is cluster {metadata.cluster_id}, ours is {ours}"
    return None


def brokers_registered(config: StackConfig, asked: int = 1) -> str | None:
    """None when the metadata broker `asked` serves lists every broker of the stack (a topic at replication factor
    3 needs all three). Only that one is asked: a client of all three would log each one not up yet.
    """
    listed = admin(config, bootstrap=config.broker_address(asked)).list_topics(timeout=3).brokers
    missing = [n for n in config.broker_numbers if n not in listed]
    return f"brokers {missing} not registered yet" if missing else None


def formatted_cluster_id(config: StackConfig, number: int = 1) -> str | None:
    """The cluster.id StorageTool wrote into broker `number`'s log dir."""
    meta = config.broker_data_dir(number) / "meta.properties"
    for line in meta.read_text().splitlines() if meta.exists() else ():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


# What librdkafka answers when a request was queued on a connection it then dropped, e.g. the bootstrap broker's
# handle, replaced once the cluster's metadata names the brokers: seen once creating the topics of three brokers
# just started. The request never reached a broker, so asking again is safe.
_DROPPED_REQUEST = ("_DESTROY_BROKER", "_TRANSPORT")
_TOPIC_ATTEMPTS = 3


def ensure_topics(config: StackConfig, names: Iterable[str] = TOPICS) -> None:
    """Create the topics that are missing (idempotent), with the stack's partitions and record size bound."""
    client = admin(config)
    for attempt in range(1, _TOPIC_ATTEMPTS + 1):
        existing = client.list_topics(timeout=5).topics
        wanted = [
            NewTopic(
                name,
                num_partitions=config.partitions,
                replication_factor=config.brokers,
                config={
                    "max.message.bytes": str(config.max_message_bytes),
                    "min.insync.replicas": str(min_insync_replicas(config)),
                },
            )
            for name in names
            if name not in existing
        ]
        dropped = False
        for name, future in client.create_topics(wanted, request_timeout=15).items() if wanted else ():
            try:
                future.result()
            except KafkaException as error:
                code = error.args[0].name()
                if code in _DROPPED_REQUEST and attempt < _TOPIC_ATTEMPTS:
                    dropped = True
                elif code != "TOPIC_ALREADY_EXISTS":
                    raise RuntimeError(f"creating topic {name!r} failed: {error}") from error
        if not dropped:
            return


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
    closed = [port_open(HOST, config.ports.broker(n)[0]) for n in config.broker_numbers]
    if all(closed):  # else librdkafka retries and logs a line every 50 ms
        raise RuntimeError("; ".join(c for c in closed if c))
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
