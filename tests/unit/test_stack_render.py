"""What the stack renders into its run folder: module.yaml (hosts only), flink-conf.yaml, server.properties."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import kafka
from stack.config import REPO_ROOT, Ports, StackConfig
from stack.flinkconf import render_flink_conf
from stack.kafka import cluster_id, server_properties
from stack.render import RenderError, render_module_yaml, write_module_yaml

SOURCE = (REPO_ROOT / "module.yaml").read_text(encoding="utf-8")


def _replace_hosts(node: Any, greeter: str, kafka: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace_hosts(v, greeter, kafka) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_hosts(v, greeter, kafka) for v in node]
    if node == "http://greeter:8000/statefun":
        return greeter
    return kafka if node == "kafka:9092" else node


def test_module_yaml_changes_only_the_hosts() -> None:
    rendered = render_module_yaml(SOURCE, 18000, "127.0.0.1:19092")
    assert "greeter:8000" not in rendered and "kafka:9092" not in rendered
    assert "http://127.0.0.1:18000/statefun" in rendered
    assert rendered.count("127.0.0.1:19092") == SOURCE.count("kafka:9092") == 2
    expected = [
        _replace_hosts(d, "http://127.0.0.1:18000/statefun", "127.0.0.1:19092") for d in yaml.safe_load_all(SOURCE)
    ]
    assert list(yaml.safe_load_all(rendered)) == expected


@pytest.mark.parametrize("missing", ["http://greeter:8000/statefun", "kafka:9092"])
def test_module_yaml_without_the_expected_host_fails(missing: str) -> None:
    with pytest.raises(RenderError, match=re.escape(missing)):
        render_module_yaml(SOURCE.replace(missing, "elsewhere:1"), 1, "127.0.0.1:2")


def test_module_yaml_is_written_into_the_run_folder(tmp_path: Path) -> None:
    url = write_module_yaml(StackConfig(run_dir=tmp_path))
    assert url == (tmp_path / "conf" / "module.yaml").as_uri()
    assert "127.0.0.1:8000" in (tmp_path / "conf" / "module.yaml").read_text()


def _flink_conf(config: StackConfig) -> dict[str, str]:
    text = render_flink_conf(config, "file:///x/module.yaml")
    lines = text.splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    for index, line in enumerate(lines):
        if line in settings:
            assert lines[index - 1].startswith("# "), f"no why above {line}"
    return dict(line.split(": ", 1) for line in settings)


def test_flink_conf_exactly_once_and_retained(tmp_path: Path) -> None:
    conf = _flink_conf(StackConfig(run_dir=tmp_path, checkpoint_interval_ms=1500))
    assert conf["execution.checkpointing.interval"] == "1500ms"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert conf["state.checkpoints.dir"] == (tmp_path / "checkpoints").as_uri()
    assert conf["state.backend"] == "rocksdb" and conf["state.backend.incremental"] == "true"
    assert conf["state.backend.rocksdb.log.dir"].startswith(str(tmp_path))
    assert conf["statefun.remote.module-name"] == "file:///x/module.yaml"
    assert conf["heartbeat.interval"] == "1000" and conf["heartbeat.timeout"] == "5000"
    assert conf["jobmanager.memory.process.size"] == "768m"
    assert conf["taskmanager.memory.process.size"] == "1024m"
    # BENCHMARKS.md, "Every JVM sized for this job": the same in the mini cluster and the TaskManagers
    assert conf["taskmanager.memory.managed.size"] == "128m"
    assert conf["taskmanager.memory.network.min"] == conf["taskmanager.memory.network.max"] == "16m"
    assert conf["env.java.opts"] == "-Dorg.apache.flink.shaded.netty4.io.netty.allocator.maxOrder=9"
    assert conf["web.refresh-interval"] == "1000"  # the REST API's cached view of a job: `up` waits on it
    assert conf["pipeline.auto-generate-uids"] == "false"
    assert "org.apache.flink.statefun" in conf["classloader.parent-first-patterns.additional"]


def test_flink_conf_binds_loopback_and_pins_ports(tmp_path: Path) -> None:
    ports = Ports.free()
    conf = _flink_conf(StackConfig(run_dir=tmp_path, ports=ports))
    for key in (
        "jobmanager.rpc.address",
        "jobmanager.bind-host",
        "taskmanager.host",
        "taskmanager.bind-host",
        "rest.address",
        "rest.bind-address",
    ):
        assert conf[key] == "127.0.0.1"
    assert conf["rest.port"] == conf["rest.bind-port"] == str(ports.flink_rest)
    assert conf["jobmanager.rpc.port"] == str(ports.jobmanager_rpc)
    assert conf["taskmanager.rpc.port"] == str(ports.taskmanager_rpc)
    assert conf["taskmanager.data.port"] == str(ports.taskmanager_data)
    assert conf["blob.server.port"] == str(ports.blob_server)
    for key in (
        "io.tmp.dirs",
        "web.tmpdir",
        "web.upload.dir",
        "state.backend.rocksdb.localdir",
        "taskmanager.state.local.root-dirs",
    ):
        assert conf[key].startswith(str(tmp_path)), key


def test_server_properties_for_one_transactional_node(tmp_path: Path) -> None:
    ports = Ports.free()
    text = server_properties(StackConfig(run_dir=tmp_path, ports=ports))
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{ports.kafka},CONTROLLER://127.0.0.1:{ports.kafka_controller}"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{ports.kafka_controller}"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert int(props["transaction.max.timeout.ms"]) >= 15 * 60 * 1000  # module.yaml's transactionTimeout
    assert props["log.dirs"] == str(tmp_path / "kafka-data")


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_of_three_brokers_make_one_quorum_at_replication_factor_3(tmp_path: Path) -> None:
    ports = Ports.free()
    config = StackConfig(run_dir=tmp_path, ports=ports, brokers=3)
    each = {n: _properties(server_properties(config, n)) for n in (1, 2, 3)}
    voters = ",".join(f"{n}@127.0.0.1:{ports.broker(n)[1]}" for n in (1, 2, 3))
    for number, props in each.items():
        port, controller = ports.broker(number)
        assert props["node.id"] == str(number)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
        assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
        assert props["log.dirs"] == str(config.broker_data_dir(number))
        for key in ("default.replication.factor", "offsets.topic.replication.factor"):
            assert props[key] == "3", key
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert len({props["log.dirs"] for props in each.values()}) == 3
    assert len({ports.broker(n) for n in (1, 2, 3)}) == 3
    assert kafka.properties_file(config, 2) == tmp_path / "conf" / "server-2.properties"


def test_every_client_and_module_yaml_get_all_three_brokers(tmp_path: Path) -> None:
    ports = Ports.free()
    config = StackConfig(run_dir=tmp_path, ports=ports, brokers=3)
    addresses = [f"127.0.0.1:{ports.kafka}", f"127.0.0.1:{ports.kafka_2}", f"127.0.0.1:{ports.kafka_3}"]
    assert config.bootstrap_servers == ",".join(addresses)
    write_module_yaml(config)
    documents = list(yaml.safe_load_all((tmp_path / "conf" / "module.yaml").read_text()))
    kafka_specs = [d["spec"] for d in documents if d["kind"].startswith("io.statefun.kafka.v1/")]
    assert [spec["address"] for spec in kafka_specs] == [",".join(addresses)] * 2
    assert StackConfig(run_dir=tmp_path, ports=ports).bootstrap_servers == addresses[0]


def test_each_broker_runs_from_its_own_properties_in_the_run_folder(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, brokers=3)
    commands = {n: kafka.argv("java", config, n) for n in (1, 2, 3)}
    assert [c[-1] for c in commands.values()] == [str(kafka.properties_file(config, n)) for n in (1, 2, 3)]
    assert all(str(tmp_path) in c[-1] and c[-2] == "kafka.Kafka" for c in commands.values())
    assert kafka.broker_names(config) == ("kafka", "kafka-2", "kafka-3")
    assert [kafka.broker_number(name) for name in kafka.broker_names(config)] == [1, 2, 3]


def test_one_broker_leaves_the_other_brokers_ports_unbound(tmp_path: Path) -> None:
    assert set(StackConfig(run_dir=tmp_path).unused_ports) == {"kafka_2", "kafka_controller_2", "kafka_3",
                                                               "kafka_controller_3"}  # fmt: skip
    assert StackConfig(run_dir=tmp_path, brokers=3).unused_ports == ()


def test_cluster_id_looks_like_kafkas() -> None:
    ids = {cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) and not i.startswith("-") for i in ids)


def test_flink_conf_overrides_replace_in_place_and_add_new_keys(tmp_path: Path) -> None:
    overrides = (("state.backend", "hashmap"), ("pipeline.object-reuse", "true"))
    text = render_flink_conf(StackConfig(run_dir=tmp_path, flink_overrides=overrides), "file:///x/module.yaml")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    keys = [line.split(": ", 1)[0] for line in settings]
    assert len(keys) == len(set(keys)), "an override must replace its key, not repeat it"
    assert "state.backend: hashmap" in settings
    assert settings[-1] == "pipeline.object-reuse: true"
    assert _flink_conf(StackConfig(run_dir=tmp_path))["state.backend"] == "rocksdb"


def test_the_brokers_jvm_gets_the_stacks_heap_and_kafka_opts_from_the_environment_as_kafkas_scripts_pass_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = StackConfig(run_dir=Path("/nonexistent"), kafka_heap="384m")
    monkeypatch.setenv("KAFKA_OPTS", "-XX:NativeMemoryTracking=summary -Dx='a b'")
    command = kafka.argv("java", config)
    assert command[1:3] == ["-Xms384m", "-Xmx384m"]
    assert "log.cleaner.dedupe.buffer.size=16777216" in server_properties(config).splitlines()
    assert command.index("-XX:NativeMemoryTracking=summary") < command.index(kafka.MAIN_CLASS)
    assert "-Dx=a b" in command
    monkeypatch.delenv("KAFKA_OPTS")
    assert not any(part.startswith(("-XX:NativeMemoryTracking", "-Dx=")) for part in kafka.argv("java", config))


def test_kafka_overrides_replace_the_brokers_settings_in_place_and_add_new_keys(tmp_path: Path) -> None:
    overrides = (
        ("transaction.max.timeout.ms", "15000"),
        ("transaction.abort.timed.out.transaction.cleanup.interval.ms", "1000"),
    )
    text = server_properties(StackConfig(run_dir=tmp_path, kafka_overrides=overrides))
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    keys = [line.split("=", 1)[0] for line in settings]
    assert len(keys) == len(set(keys)), "an override must replace its key, not repeat it"
    assert "transaction.max.timeout.ms=15000" in settings
    assert settings[-1] == "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000"


def test_egress_overrides_reach_the_egress_only_and_keep_its_own_properties(tmp_path: Path) -> None:
    config = StackConfig(
        run_dir=tmp_path,
        egress_overrides=(("delivery.timeout.ms", "15000"), ("request.timeout.ms", "10000")),
        egress_transaction_timeout="12s",
    )
    write_module_yaml(config)
    specs = {d["kind"]: d["spec"] for d in yaml.safe_load_all((tmp_path / "conf" / "module.yaml").read_text())}
    egress = specs["io.statefun.kafka.v1/egress"]
    assert egress["deliverySemantic"] == {"type": "exactly-once", "transactionTimeout": "12s"}
    properties = {key: value for item in egress["properties"] for key, value in item.items()}
    assert properties == {
        "linger.ms": 20,
        "batch.size": 262144,
        "delivery.timeout.ms": 15000,
        "request.timeout.ms": 10000,
    }
    assert "properties" not in specs["io.statefun.kafka.v1/ingress"]


def test_module_yaml_keeps_its_transaction_timeout_unless_told(tmp_path: Path) -> None:
    write_module_yaml(StackConfig(run_dir=tmp_path))
    assert "transactionTimeout: 15min" in (tmp_path / "conf" / "module.yaml").read_text()
