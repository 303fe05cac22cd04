"""docker-compose.yml, checked without a Docker engine: the Compose schema, pinned images, existing files,
and every setting it shares with the local stack (which the end-to-end tests run for real)."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy_render.manifests import COMPOSE_FLINK_CONF, render_compose_flink_conf
from stack.config import TOPICS, StackConfig
from stack.kafka import broker_settings, heap_options
from tests.static.flink_paths import local_folders, not_absolute

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("data") / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema.validate(compose, json.loads(SCHEMA.read_text()), cls=jsonschema.Draft7Validator)


PINNED = r"[\w./-]+:v?\d+(\.\d+)+"


def test_every_pulled_image_is_pinned_to_a_version_another_source_may_replace(compose: dict[str, Any]) -> None:
    sources = {}
    for name, service in compose["services"].items():
        if service.get("image") == "statefun-greeter:local":
            continue  # built by the greeter service: the next test
        variable, default = re.fullmatch(r"\$\{(\w+):-(.+)\}", service["image"]).groups()  # type: ignore[union-attr]
        assert re.fullmatch(PINNED, default), f"{name}: {default} is not pinned"
        sources.setdefault(variable, set()).add(default)
    assert sources == {
        "KAFKA_IMAGE": {"apache/kafka:3.9.1"},
        "STATEFUN_IMAGE": {"apache/flink-statefun:3.3.0"},
        "PROMETHEUS_IMAGE": {"prom/prometheus:v2.53.5"},
        "GRAFANA_IMAGE": {"grafana/grafana:12.3.1"},
    }


def test_the_greeter_image_is_built_once_from_a_pinned_base(compose: dict[str, Any]) -> None:
    users = {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "statefun-greeter:local"
    }
    assert sorted(users) == ["consumer", "generator", "greeter"]
    # One build: several services with a build section each build the image, and the last id wins the tag, so
    # the next `up` recreates the others (and restarts the runtime, which depends on the greeter).
    assert [name for name, service in users.items() if "build" in service] == ["greeter"]
    assert {name: service["pull_policy"] for name, service in users.items()} == {
        "greeter": "missing",
        "generator": "never",
        "consumer": "never",
    }
    build = users["greeter"]["build"]
    dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text()
    assert build["args"] == ["PYTHON_IMAGE"]  # passed only when set: the Dockerfile's default otherwise
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default), default
    assert "FROM ${PYTHON_IMAGE}\n" in dockerfile


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):  # long syntax: the monitoring profile's files and folders
                assert volume["type"] != "bind" or (ROOT / volume["source"]).exists(), volume["source"]
                continue
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), source


def test_only_the_uis_and_kafkas_outside_listener_are_published_and_on_loopback(compose: dict[str, Any]) -> None:
    published = {name: service["ports"] for name, service in compose["services"].items() if "ports" in service}
    assert published == {
        "kafka": ["127.0.0.1:${KAFKA_HOST_PORT:-9094}:9094"],
        "statefun-master": ["127.0.0.1:${FLINK_UI_HOST_PORT:-8081}:8081"],
        "prometheus": ["127.0.0.1:${PROMETHEUS_HOST_PORT:-9090}:9090"],
        "grafana": ["127.0.0.1:${GRAFANA_HOST_PORT:-3000}:3000"],
    }
    # Clients on the host are sent back to the port it is published on.
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:${KAFKA_HOST_PORT:-9094}" in advertised.split(",")


def test_flink_conf_is_rendered_from_the_local_stacks_settings() -> None:
    assert COMPOSE_FLINK_CONF.read_text() == render_compose_flink_conf(), "run: .venv/bin/python -m deploy_render"
    conf = dict(
        line.split(": ", 1) for line in render_compose_flink_conf().splitlines() if line and not line.startswith("#")
    )
    assert conf["execution.checkpointing.interval"] == f"{StackConfig().checkpoint_interval_ms}ms"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"


def test_every_local_folder_is_an_absolute_path_in_the_images_state_folder() -> None:
    # As Flink splits them (on "," and ":"): a `file://` URI there is the relative folder `file` plus the rest.
    conf = dict(
        line.split(": ", 1) for line in render_compose_flink_conf().splitlines() if line and not line.startswith("#")
    )
    assert not_absolute(conf) == []
    folders = local_folders(conf)
    assert {"taskmanager.state.local.root-dirs", "state.backend.rocksdb.localdir"} <= set(folders)
    for key, paths in folders.items():
        # /local/state: the folder the StateFun image (and tests/compose's stand-in) makes for the runtime's state.
        assert all(path.startswith("/local/state/") for path in paths), (key, paths)


def test_both_runtime_containers_mount_module_yaml_flink_conf_and_logging_where_the_image_reads_them(
    compose: dict[str, Any],
) -> None:
    for name in ("statefun-master", "statefun-worker"):
        volumes = compose["services"][name]["volumes"]
        assert "./module.yaml:/opt/statefun/modules/greeter/module.yaml:ro" in volumes
        assert "./deploy/compose/flink-conf.yaml:/opt/flink/conf/flink-conf.yaml:ro" in volumes
        # The local stack's logging: the image's logs every transactional producer's whole config at start.
        assert "./deploy/compose/log4j-console.properties:/opt/flink/conf/log4j-console.properties:ro" in volumes
        assert any(v.endswith(":/checkpoint-dir") for v in volumes), "checkpoints shared by master and worker"
        # The shared entry point (jemalloc for RocksDB; the master resumes), as on Kubernetes.
        assert "./deploy/compose/statefun-runtime.sh:/opt/greeter/statefun-runtime.sh:ro" in volumes
        assert compose["services"][name]["entrypoint"] == ["/bin/bash", "/opt/greeter/statefun-runtime.sh"]


def test_module_yaml_hosts_are_the_compose_services(compose: dict[str, Any]) -> None:
    documents = {d["kind"]: d["spec"] for d in yaml.safe_load_all((ROOT / "module.yaml").read_text())}
    assert documents["io.statefun.endpoints.v2/http"]["urlPathTemplate"] == "http://greeter:8000/statefun"
    assert compose["services"]["greeter"]["environment"]["GREETER_BIND"] == "0.0.0.0:8000"
    assert documents["io.statefun.kafka.v1/ingress"]["address"] == "kafka:9092"
    assert "INTERNAL://kafka:9092" in compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_broker_settings_match_the_local_stack(compose: dict[str, Any]) -> None:
    environment = compose["services"]["kafka"]["environment"]
    for key, value, _why in broker_settings(StackConfig()):
        variable = "KAFKA_" + key.upper().replace(".", "_")
        assert str(environment.get(variable)) == value, (
            f"{variable}: compose {environment.get(variable)}, local {value}"
        )


def test_the_broker_gets_the_local_stacks_heap_not_the_images_default(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["environment"]["KAFKA_HEAP_OPTS"] == " ".join(heap_options(StackConfig()))


def test_topics_match_the_local_stack(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["topics"]["command"])
    config = StackConfig()
    assert re.search(r"for topic in ([\w -]+);", script).group(1).split() == list(TOPICS)  # type: ignore[union-attr]
    assert f"--partitions {config.partitions}" in script
    assert f"max.message.bytes={config.max_message_bytes}" in script


def test_start_order_waits_for_what_each_service_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["statefun-master"]["depends_on"] == {
        "topics": {"condition": "service_completed_successfully"},
        "greeter": {"condition": "service_healthy"},
    }
    assert services["generator"]["depends_on"] == {"statefun-master": {"condition": "service_healthy"}}


def test_expiry_passes_through(compose: dict[str, Any]) -> None:
    assert compose["services"]["greeter"]["environment"]["GREETER_SEEN_COUNT_TTL"] == "${GREETER_SEEN_COUNT_TTL:-0}"


def test_a_health_check_only_where_something_serves_it(compose: dict[str, Any]) -> None:
    # The generator and the consumer run from the greeter's image and serve nothing: a HEALTHCHECK in the image
    # would leave them "unhealthy" forever, and `healthcheck: disable` makes `docker compose up --wait` fail ("has
    # no healthcheck configured"). So the image has none and the greeter service has its own.
    assert not re.search(r"^HEALTHCHECK", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    checked = {name for name, service in compose["services"].items() if "healthcheck" in service}
    assert checked == {"kafka", "greeter", "statefun-master", "prometheus"}
    assert "http://127.0.0.1:8000/healthz" in " ".join(compose["services"]["greeter"]["healthcheck"]["test"])
