"""The three-broker cluster as `status` shows it and the fault tests find its brokers: the controller from the
voters' quorum-state files, short ISRs, and Kafka's FindCoordinator request and answer, byte for byte."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

from stack import brokers, kafka
from stack.brokers import PartitionIsr
from stack.config import Ports, StackConfig
from stack.faults import BrokerPartition
from stack.status import ProcStatus, StackStatus, format_status


def _quorum_state(config: StackConfig, number: int, leader: int, epoch: int) -> None:
    path = config.broker_data_dir(number) / brokers.QUORUM_STATE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"clusterId": "", "leaderId": leader, "leaderEpoch": epoch, "votedId": -1}))


def test_the_controller_is_the_leader_of_the_newest_epoch_any_voter_recorded(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, brokers=3)
    assert brokers.recorded_controller(config) is None  # nothing elected yet
    _quorum_state(config, 1, leader=1, epoch=3)  # broker 1 went down as the leader of epoch 3
    _quorum_state(config, 2, leader=3, epoch=4)
    _quorum_state(config, 3, leader=-1, epoch=5)  # an election under way: no leader yet
    assert brokers.recorded_controller(config) == 3


def test_status_shows_the_controller_and_each_short_isr() -> None:
    names = ("kafka", "kafka-2", "kafka-3", "greeter", "runtime")
    procs = [ProcStatus(name, 10 + i, name != "kafka-3", f"/run/{name}.log") for i, name in enumerate(names)]
    short = (PartitionIsr("names", 0, (1, 2, 3), (1, 2)), PartitionIsr("greetings", 3, (3, 1, 2), ()))
    status = StackStatus("/run", names, procs, None, None, None, None, None, [], controller=2, short_isr=short)
    text = format_status(status)
    assert "kafka-3      pid 12       DOWN" in text
    assert "controller   broker 2 (kafka-2)" in text
    assert "short isr    names-0 (isr 1,2 of 3), greetings-3 (isr none of 3)" in text
    in_sync = StackStatus("/run", names, procs, None, None, None, None, None, [], controller=1, short_isr=())
    assert "short isr    none: every replica in sync" in format_status(in_sync)
    one_broker = StackStatus("/run", names, procs, None, None, None, None, None, [])
    assert "controller" not in format_status(one_broker) and "short isr" not in format_status(one_broker)


def test_find_coordinator_asks_for_the_transactional_id_and_reads_the_node(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    asked: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            (size,) = struct.unpack(">i", conn.recv(4))
            request = b""
            while len(request) < size:
                request += conn.recv(size - len(request))
            asked.append(request)
            correlation = request[4:8]
            host = b"127.0.0.1"
            # FindCoordinator v1: throttle, error 0, null message, node 3, host, port
            body = correlation + struct.pack(">ihhi", 0, 0, -1, 3) + struct.pack(">h", len(host)) + host
            body += struct.pack(">i", 9092)
            conn.sendall(struct.pack(">i", len(body)) + body)

    thread = threading.Thread(target=answer)
    thread.start()
    config = StackConfig(run_dir=tmp_path, ports=Ports(kafka=server.getsockname()[1]))
    try:
        assert brokers.find_transaction_coordinator(config, "egress-7") == 3
    finally:
        thread.join(5)
        server.close()
    api_key, version = struct.unpack_from(">hh", asked[0])
    assert (api_key, version) == (10, 1)
    client_length = struct.unpack_from(">h", asked[0], 8)[0]
    key = asked[0][10 + client_length :]
    assert key == struct.pack(">h", 8) + b"egress-7" + b"\x01"  # key type 1: a transaction


def test_the_run_folder_remembers_how_many_brokers_its_storage_was_made_for(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, brokers=3)
    assert kafka.formatted_broker_count(config) is None
    for number in (1, 2, 3):
        config.broker_data_dir(number).mkdir(parents=True)
        (config.broker_data_dir(number) / "meta.properties").write_text("cluster.id=abc\n")
    # `up --brokers 1` on this folder is refused (stack/local.py): its topics have replicas on brokers 2 and 3
    assert kafka.formatted_broker_count(StackConfig(run_dir=tmp_path)) == 3
    assert kafka.formatted_cluster_id(config, 3) == "abc"


def test_a_partition_drops_only_what_the_brokers_send_each_other_across_the_cut() -> None:
    """Broker 2 cut off: its cgroup's packets to the listeners of 1 and 3 dropped, and theirs to its listeners;
    nothing else (clients are in no broker's cgroup, 1 and 3 still reach each other)."""
    ports = Ports()
    config = StackConfig(brokers=3, ports=ports, broker_cgroup="tests/cluster")
    assert kafka.broker_cgroup(config, "kafka-2") == "tests/cluster/broker-2"
    assert kafka.broker_cgroup(config, "greeter") is None
    dropped = set()
    for rule in BrokerPartition(config, "kafka-2").rules:
        assert rule[:7] == ["OUTPUT", "-o", "lo", "-d", "127.0.0.1", "-p", "tcp"] and rule[-2:] == ["-j", "DROP"]
        sender = rule[rule.index("--path") + 1]
        listeners = tuple(map(int, rule[rule.index("--dports") + 1].split(",")))
        dropped.add((sender, listeners))
    assert dropped == {
        ("tests/cluster/broker-2", ports.broker(1)),
        ("tests/cluster/broker-2", ports.broker(3)),
        ("tests/cluster/broker-1", ports.broker(2)),
        ("tests/cluster/broker-3", ports.broker(2)),
    }
