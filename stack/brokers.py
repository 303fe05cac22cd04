"""The three-broker cluster's state as `status` and the fault tests see it: the active controller (the voters'
record, or DescribeQuorum through Kafka's own tool), the partitions whose ISR is short, a partition's leader, and
the broker that coordinates the egress's open transaction (FindCoordinator).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from . import kafka
from .config import StackConfig

# KRaft's record of the quorum (raft's FileQuorumStateStore), rewritten by each voter on every election.
QUORUM_STATE = "__cluster_metadata-0/quorum-state"
METADATA_QUORUM_TOOL = "org.apache.kafka.tools.MetadataQuorumCommand"
EGRESS_TRANSACTIONS = "Sink: example-greets-egress"  # in the transactional ids Flink gives the egress's producers
TRANSACTION_LOG = "__transaction_state"


@dataclass(frozen=True)
class PartitionIsr:
    """A partition's replicas and in-sync replicas."""

    topic: str
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition} (isr {','.join(map(str, self.isr)) or 'none'} of {len(self.replicas)})"


def recorded_controller(config: StackConfig) -> int | None:
    """The active controller as the voters last recorded it: the leader of the newest epoch in any broker's
    quorum-state file. Read from disk, so it answers at once and with every broker down (then it names the last
    one); None before any election.
    """
    newest: tuple[int, int] | None = None  # (epoch, leader)
    for number in config.broker_numbers:
        path = config.broker_data_dir(number) / QUORUM_STATE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):  # not written yet, or mid-rewrite
            continue
        if state.get("leaderId", -1) >= 0 and (newest is None or state["leaderEpoch"] > newest[0]):
            newest = (int(state["leaderEpoch"]), int(state["leaderId"]))
    return newest[1] if newest else None


def partition_isrs(config: StackConfig, asked: int | None = None) -> list[PartitionIsr]:
    """Every partition's (internal topics' too) replicas and ISR, in the metadata of broker `asked` (None: any
    broker; a broker cut off from the controller serves what it knew last).
    """
    bootstrap = None if asked is None else config.broker_address(asked)
    topics = kafka.admin(config, bootstrap=bootstrap).list_topics(timeout=5).topics
    return [
        PartitionIsr(name, number, tuple(p.replicas), tuple(p.isrs))
        for name, topic in sorted(topics.items())
        for number, p in sorted(topic.partitions.items())
    ]


def short_isr(config: StackConfig, asked: int | None = None) -> list[PartitionIsr]:
    """Every partition whose ISR is smaller than its replica set, in the metadata of broker `asked` (None: any)."""
    return [p for p in partition_isrs(config, asked) if len(p.isr) < len(p.replicas)]


def topic_setting(config: StackConfig, topics: Iterable[str], key: str) -> dict[str, str]:
    """Each topic's value of setting `key`, as the brokers describe it."""
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    client = kafka.admin(config)  # held until the answers are in: a dropped client fails its futures
    described = client.describe_configs(resources, request_timeout=15)
    return {resource.name: str(future.result()[key].value) for resource, future in described.items()}


def partition_leader(config: StackConfig, topic: str, partition: int) -> int:
    """The broker leading `partition` of `topic` (-1: none)."""
    return int(kafka.admin(config).list_topics(topic, timeout=5).topics[topic].partitions[partition].leader)


def _tool(java: str, config: StackConfig, main_class: str, *arguments: str) -> str:
    """Run one of Kafka's admin tools against the stack's brokers; its stdout. RuntimeError when it fails."""
    argv = [
        java,
        f"-Dlog4j.configuration=file:{config.conf_dir}/kafka-tools-log4j.properties",
        "-cp",
        kafka.classpath(config),
        main_class,
        "--bootstrap-server",
        config.bootstrap_servers,
        *arguments,
    ]
    (config.conf_dir / "kafka-tools-log4j.properties").write_text("log4j.rootLogger=ERROR\n")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{main_class} {' '.join(arguments)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def active_controller(java: str, config: StackConfig) -> int:
    """The quorum's leader as the quorum itself answers (DescribeQuorum: kafka-metadata-quorum.sh describe)."""
    found = re.search(r"(?m)^LeaderId:\s+(\d+)", _tool(java, config, METADATA_QUORUM_TOOL, "describe", "--status"))
    if found is None:
        raise RuntimeError("kafka-metadata-quorum describe printed no LeaderId")
    return int(found.group(1))


def find_transaction_coordinator(config: StackConfig, transactional_id: str, timeout_s: float = 5.0) -> int:
    """The broker coordinating `transactional_id`, as the brokers answer Kafka's FindCoordinator request (key
    type transaction; what a transactional producer asks first). Asked of each live broker in turn; RuntimeError
    when none answers with a coordinator.
    """
    errors = []
    for number in config.broker_numbers:
        try:
            with socket.create_connection(("127.0.0.1", config.ports.broker(number)[0]), timeout=timeout_s) as conn:
                conn.sendall(_find_coordinator_request(transactional_id))
                error, node = _find_coordinator_response(_read_frame(conn))
        except OSError as failure:
            errors.append(f"broker {number}: {failure}")
            continue
        if error == 0:
            return node
        errors.append(f"broker {number}: error code {error}")
    raise RuntimeError(f"FindCoordinator for {transactional_id!r}: {'; '.join(errors)}")


_FIND_COORDINATOR = 10  # the request's API key; version 1 is the first with a key type
_TRANSACTION_KEY = 1


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _find_coordinator_request(transactional_id: str) -> bytes:
    header = struct.pack(">hhi", _FIND_COORDINATOR, 1, 1) + _string("greeter-stack")
    body = _string(transactional_id) + struct.pack(">b", _TRANSACTION_KEY)
    return struct.pack(">i", len(header) + len(body)) + header + body


def _read_frame(conn: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def _find_coordinator_response(frame: bytes) -> tuple[int, int]:
    """(error code, coordinator node id) of a FindCoordinator v1 response."""
    _correlation, _throttle, error, message_length = struct.unpack_from(">iihh", frame)
    offset = 12 + max(message_length, 0)
    (node,) = struct.unpack_from(">i", frame, offset)
    return error, node


# TransactionState's codes as the coordinators write them into __transaction_state (TransactionLogValue).
ONGOING = 1


class TransactionLog:
    """A reader of what the transaction coordinators write into __transaction_state, from its end when it opens:
    each transactional id's state changes as they happen. A context manager.
    """

    def __init__(self, config: StackConfig) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": "greeter-stack-transaction-log",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "log_level": 2,  # no connection errors on the console: brokers are killed on purpose
            }
        )
        partitions = self._consumer.list_topics(TRANSACTION_LOG, timeout=5).topics[TRANSACTION_LOG].partitions
        ends = [TopicPartition(TRANSACTION_LOG, p) for p in partitions]
        for tp in ends:  # positioned now, not at the first fetch: no state written after opening is missed
            tp.offset = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
        self._consumer.assign(ends)

    def __enter__(self) -> TransactionLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._consumer.close()

    def next_open_egress_transaction(self, timeout_s: float = 30.0) -> str:
        """The transactional id of the next egress transaction to open (take its first records) from here on;
        RuntimeError when none does in `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.05)
            if message is None or message.error() is not None or not message.value():
                continue
            key, value = message.key() or b"", message.value() or b""
            (length,) = struct.unpack_from(">h", key, 2)  # after the key's version
            transactional_id = key[4 : 4 + length].decode()
            # the value (TransactionLogValue): version, producer id, producer epoch, timeout, then the state
            (state,) = struct.unpack_from(">b", value, 2 + 8 + 2 + 4)
            if state == ONGOING and EGRESS_TRANSACTIONS in transactional_id:
                return transactional_id
        raise RuntimeError(f"no egress transaction opened within {timeout_s:.0f} s")
