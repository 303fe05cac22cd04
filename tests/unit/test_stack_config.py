"""stack/config.py: defaults, environment parsing, serialisation of the one config object."""

from pathlib import Path

import pytest

from stack.config import REPO_ROOT, ConfigError, Extra, Ports, StackConfig, from_env, port_env_var


def test_defaults_are_the_documented_ones() -> None:
    config = StackConfig()
    assert config.run_dir == REPO_ROOT / "run"
    assert config.ports.kafka == 9092 and config.ports.greeter == 8000 and config.ports.flink_rest == 8081
    assert config.jobmanager_memory == "768m" and config.taskmanager_memory == "1024m"
    assert config.runtime_heap == "256m" and config.kafka_heap == "128m"
    assert (config.heartbeat_interval_ms, config.heartbeat_timeout_ms) == (1000, 5000)
    assert config.max_message_bytes >= 60 * 1024
    assert config.mode == "single"  # the quick start runs the job in one JVM


def test_a_mode_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected one of single, cluster"):
        StackConfig(mode="local")


def test_every_port_is_distinct() -> None:
    ports = list(vars(Ports()).values())
    assert len(set(ports)) == len(ports)


def test_free_ports_are_distinct() -> None:
    ports = list(vars(Ports.free()).values())
    assert len(set(ports)) == len(ports)
    assert all(port > 0 for port in ports)


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "GREETER_STACK_RUN_DIR": str(tmp_path),
        "GREETER_STACK_CHECKPOINT_INTERVAL_MS": "500",
        port_env_var("kafka"): "19092",
        "GREETER_SEEN_COUNT_TTL": "60",
    }
    config = from_env(env)
    assert config.run_dir == tmp_path.resolve()
    assert config.checkpoint_interval_ms == 500
    assert config.ports.kafka == 19092
    assert config.ports.greeter == 8000
    assert config.seen_count_ttl == 60


def test_empty_variables_mean_default() -> None:
    assert from_env({"GREETER_STACK_PARTITIONS": ""}).partitions == StackConfig().partitions


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GREETER_STACK_PARTITIONS", "four"),
        ("GREETER_STACK_PORT_KAFKA", "-1"),
        ("GREETER_STACK_STOP_TIMEOUT_S", "x"),
        ("GREETER_STACK_TLS", "maybe"),
        ("GREETER_STACK_MODE", "docker"),
        # Passed on to the greeter, and checked by the greeter's own parser first.
        ("GREETER_SEEN_COUNT_TTL", "-5"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        from_env({variable: value})


def test_json_round_trip(tmp_path: Path) -> None:
    config = StackConfig(
        run_dir=tmp_path, ports=Ports.free(), extras=(Extra("gen", ("a", "b")),), seen_count_ttl=5, mode="cluster"
    )
    assert StackConfig.from_json(config.to_json()) == config


def test_paths_derive_from_the_run_folder(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    for path in (config.conf_dir, config.checkpoint_dir, config.kafka_data_dir, config.state_file):
        assert path.is_relative_to(tmp_path)
    assert config.log_file("kafka") == tmp_path / "kafka.log"


def test_brokers_are_one_or_three_and_three_refuse_the_secured_mode() -> None:
    assert from_env({"GREETER_STACK_BROKERS": "3"}).brokers == 3
    assert from_env({}).brokers == 1
    with pytest.raises(ConfigError, match="GREETER_STACK_BROKERS='2'"):
        from_env({"GREETER_STACK_BROKERS": "2"})
    with pytest.raises(ConfigError, match="cannot be combined with --brokers 3"):
        StackConfig(brokers=3, kafka_security="sasl-ssl")


def test_broker_cgroup_is_a_path_under_the_cgroup2_mount() -> None:
    assert from_env({}).broker_cgroup is None
    assert from_env({"GREETER_STACK_BROKER_CGROUP": "tests/kafka-cluster"}).broker_cgroup == "tests/kafka-cluster"
    for bad in ("/sys/fs/cgroup/unified/x", "a/../b", "a/", "a//b"):
        with pytest.raises(ConfigError, match="GREETER_STACK_BROKER_CGROUP"):
            from_env({"GREETER_STACK_BROKER_CGROUP": bad})
    config = StackConfig(brokers=3, broker_cgroup="tests/kafka-cluster")
    assert StackConfig.from_json(config.to_json()) == config
