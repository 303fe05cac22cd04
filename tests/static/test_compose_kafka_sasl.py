"""docker-compose.kafka-sasl.yml, checked without a Docker engine: merged onto docker-compose.yml it validates
against the vendored schema; the broker's settings are stack/kafka_auth.py's; every service mounts the files its
settings name, and only those its own principal needs; the runtime mounts the rendered module and flink-conf, which
hold no secret; the ACL job grants stack/kafka_auth.ACLS; the documented command makes every file the override
mounts. That it runs: tests/compose/test_compose_kafka_sasl.py."""

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from clitools.kafka_security import SECRET_KEYS
from deploy_render.compose_kafka import COMPOSE_KAFKA_AUTH_DIR, CONTAINER_DIR, IN_CONTAINER, ComposeKafkaFiles, main
from deploy_render.manifests import (
    COMPOSE_FLINK_CONF_KAFKA_SASL,
    COMPOSE_KAFKA_TOOLS,
    COMPOSE_MODULE_KAFKA_SASL,
    compose_kafka_client_properties,
    render_compose_flink_conf,
    render_compose_flink_conf_kafka_sasl,
    render_compose_kafka_tools,
    render_compose_module_kafka_sasl,
)
from stack.kafka_auth import ADMIN, CONSUMER, GENERATOR, PROTOCOL, jaas_option, security_settings

from .compose_files import ROOT, SCHEMA, assert_read_only_bind_of, merge, mounts

OVERRIDE = ROOT / "docker-compose.kafka-sasl.yml"
UP = "docker compose -f docker-compose.yml -f docker-compose.kafka-sasl.yml up --build"
IMAGE_MODULE_YAML = "/opt/statefun/modules/greeter/module.yaml"
IMAGE_FLINK_CONF = "/opt/flink/conf/flink-conf.yaml"
RUNTIMES = ("statefun-master", "statefun-worker")
KAFKA_KINDS = ("io.statefun.kafka.v1/ingress", "io.statefun.kafka.v1/egress")
# The folder's files each service gets: its own login and the CA, nothing else.
FILES = ComposeKafkaFiles(COMPOSE_KAFKA_AUTH_DIR)
EXPECTED_FILES = {
    "kafka": {FILES.key_store, FILES.ca, FILES.broker_jaas, FILES.scram_argfile},
    "topics": {FILES.admin_jaas, FILES.ca},
    "kafka-acls": {FILES.client_file(ADMIN), FILES.ca},
    "statefun-master": {FILES.runtime_jaas, FILES.ca},
    "statefun-worker": {FILES.runtime_jaas, FILES.ca},
    "generator": {FILES.client_file(GENERATOR), FILES.ca},
    "consumer": {FILES.client_file(CONSUMER), FILES.ca},
}


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OVERRIDE.read_text())
    return document


@pytest.fixture(scope="module")
def merged(override: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = merge(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), override)
    return result


def source_of(path: Path) -> str:
    """How the override names a repository file: relative to the base file, as Compose wants."""
    return f"./{path.relative_to(ROOT)}"


def auth_files_mounted(service: dict[str, Any]) -> dict[Path, str]:
    """The folder's files a service mounts -> where."""
    found = {}
    for target, volume in mounts(service).items() if "volumes" in service else ():
        if isinstance(volume, dict) and (ROOT / volume["source"]).parent == COMPOSE_KAFKA_AUTH_DIR:
            assert_read_only_bind_of(volume, volume["source"])
            assert PurePosixPath(target) == CONTAINER_DIR / Path(volume["source"]).name, (target, volume)
            found[ROOT / volume["source"]] = target
    return found


def env_name(key: str) -> str:
    """The apache/kafka image's variable for a broker setting ("-" is "___", "_" is "__", "." is "_")."""
    return "KAFKA_" + key.replace("-", "___").replace("_", "__").replace(".", "_").upper()


def module_documents(text: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(text)}


def test_the_merged_stack_and_the_override_validate_against_the_compose_specification(
    merged: dict[str, Any], override: dict[str, Any]
) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(override, schema, cls=jsonschema.Draft7Validator)
    jsonschema.validate(merged, schema, cls=jsonschema.Draft7Validator)


def test_the_rendered_files_are_current() -> None:
    assert COMPOSE_MODULE_KAFKA_SASL.read_text() == render_compose_module_kafka_sasl(), "run: python -m deploy_render"
    assert COMPOSE_FLINK_CONF_KAFKA_SASL.read_text() == render_compose_flink_conf_kafka_sasl()
    assert COMPOSE_KAFKA_TOOLS.read_text() == render_compose_kafka_tools()


def test_the_broker_has_the_local_stacks_security_settings(merged: dict[str, Any]) -> None:
    env = merged["services"]["kafka"]["environment"]
    for key, value, _why in security_settings():
        assert env[env_name(key)] == value, key
    # Every listener but the controller's speaks SASL_SSL; the controller's SASL (PLAIN) inside the network.
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert set(protocols) == listeners
    assert {name: p for name, p in protocols.items() if name != env["KAFKA_CONTROLLER_LISTENER_NAMES"]} == {
        name: PROTOCOL for name in listeners - {env["KAFKA_CONTROLLER_LISTENER_NAMES"]}
    }
    assert protocols[env["KAFKA_CONTROLLER_LISTENER_NAMES"]] == "SASL_PLAINTEXT"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    # The PEM stores and the logins are the mounted files.
    assert env["KAFKA_SSL_KEYSTORE_LOCATION"] == str(IN_CONTAINER.key_store)
    assert env["KAFKA_SSL_TRUSTSTORE_LOCATION"] == str(IN_CONTAINER.ca)
    assert env["KAFKA_OPTS"] == jaas_option(IN_CONTAINER.broker_jaas)
    assert env["GREETER_KAFKA_SCRAM_ARGFILE"] == str(IN_CONTAINER.scram_argfile)


def test_the_broker_formats_with_the_scram_users_then_runs_the_images_own_start(merged: dict[str, Any]) -> None:
    kafka = merged["services"]["kafka"]
    script = ROOT / "deploy" / "compose" / "kafka-scram-format.sh"
    (target,) = [t for t, v in mounts(kafka).items() if isinstance(v, dict) and v["source"] == source_of(script)]
    assert kafka["entrypoint"] == ["/bin/bash", target]
    assert kafka["command"] == ["/etc/kafka/docker/run"]  # the apache/kafka image's CMD
    text = script.read_text()
    assert '"@${GREETER_KAFKA_SCRAM_ARGFILE}"' in text, "the passwords come from the argument file, not argv"
    assert text.rstrip().endswith('exec "$@"')


def test_each_service_mounts_its_own_login_and_the_ca_only(merged: dict[str, Any]) -> None:
    services = merged["services"]
    assert {name for name in services if auth_files_mounted(services[name])} == set(EXPECTED_FILES)
    for name, expected in EXPECTED_FILES.items():
        assert set(auth_files_mounted(services[name])) == expected, name
    every_file = set().union(*EXPECTED_FILES.values())
    assert every_file == set(FILES.all), "every file made is mounted by someone"


def test_the_settings_name_mounted_files(merged: dict[str, Any]) -> None:
    services = merged["services"]
    for name, service in services.items():
        targets = set(mounts(service)) if "volumes" in service else set()
        named = re.findall(rf"{CONTAINER_DIR}/[\w.-]+", json.dumps(service.get("environment", {})))
        assert set(named) <= targets, (name, set(named) - targets)
    for name in ("generator", "consumer", "kafka-acls"):
        env = services[name]["environment"]
        assert env["GREETER_KAFKA_SSL_CA"] == str(IN_CONTAINER.ca), name
    assert services["generator"]["environment"]["GREETER_KAFKA_CLIENT_CONFIG"] == str(
        IN_CONTAINER.client_file(GENERATOR)
    )
    assert services["consumer"]["environment"]["GREETER_KAFKA_CLIENT_CONFIG"] == str(IN_CONTAINER.client_file(CONSUMER))
    assert services["kafka-acls"]["environment"]["GREETER_KAFKA_CLIENT_CONFIG"] == str(IN_CONTAINER.client_file(ADMIN))
    assert services["topics"]["environment"]["KAFKA_OPTS"] == jaas_option(IN_CONTAINER.admin_jaas)


def test_the_kafka_tools_log_in_with_the_rendered_settings(merged: dict[str, Any]) -> None:
    services = merged["services"]
    tools = f"{CONTAINER_DIR}/{COMPOSE_KAFKA_TOOLS.name}"
    for name in ("kafka", "topics"):
        assert services[name]["environment"]["GREETER_KAFKA_TOOLS_CONFIG"] == tools, name
        assert_read_only_bind_of(mounts(services[name])[tools], source_of(COMPOSE_KAFKA_TOOLS))
    # docker-compose.yml's health check and topics command take it when set.
    hook = '$${GREETER_KAFKA_TOOLS_CONFIG:+--command-config "$$GREETER_KAFKA_TOOLS_CONFIG"}'
    assert hook in services["kafka"]["healthcheck"]["test"][1]
    assert hook in services["topics"]["command"][0]


def test_the_runtime_mounts_the_rendered_module_and_flink_conf(merged: dict[str, Any]) -> None:
    for name in RUNTIMES:
        found = mounts(merged["services"][name])
        assert_read_only_bind_of(found[IMAGE_MODULE_YAML], source_of(COMPOSE_MODULE_KAFKA_SASL))
        assert_read_only_bind_of(found[IMAGE_FLINK_CONF], source_of(COMPOSE_FLINK_CONF_KAFKA_SASL))
    # The worker starts after the master, which waits for the ACLs.
    assert merged["services"]["statefun-master"]["depends_on"]["kafka-acls"] == {
        "condition": "service_completed_successfully"
    }
    conf = COMPOSE_FLINK_CONF_KAFKA_SASL.read_text()
    assert f"env.java.opts.taskmanager: {jaas_option(IN_CONTAINER.runtime_jaas)}" in conf.splitlines()
    assert conf.startswith("#") and render_compose_flink_conf().split("\n", 1)[1] in conf, "the plain one, plus"


def test_the_rendered_module_is_module_yaml_with_the_client_settings_and_no_secret() -> None:
    secured = module_documents(COMPOSE_MODULE_KAFKA_SASL.read_text())
    plain = module_documents((ROOT / "module.yaml").read_text())
    added = compose_kafka_client_properties()
    for kind in KAFKA_KINDS:
        properties = secured[kind].pop("properties")
        assert {k: v for item in properties for k, v in item.items() if k in added} == added, kind
        rest = [item for item in properties if next(iter(item)) not in added]
        if rest:  # the module's own, kept as they were
            secured[kind]["properties"] = rest
    assert secured == plain
    text = COMPOSE_MODULE_KAFKA_SASL.read_text() + COMPOSE_KAFKA_TOOLS.read_text()
    assert not [key for key in SECRET_KEYS if key in text]
    assert "password" not in text.lower()


def test_the_acl_job_grants_the_local_stacks_list_as_admin(merged: dict[str, Any]) -> None:
    job = merged["services"]["kafka-acls"]
    assert job["command"][:3] == ["python", "-m", "deploy_render.kafka_acls"]  # ACLS of stack/kafka_auth.py
    assert job["image"] == merged["services"]["greeter"]["image"], "the greeter image, which has the stack package"
    assert job["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert merged["services"]["consumer"]["depends_on"]["kafka-acls"] == {"condition": "service_completed_successfully"}


def test_only_the_made_files_are_missing_from_the_repository(override: dict[str, Any]) -> None:
    for service in override["services"].values():
        for volume in service.get("volumes", []):
            source = ROOT / volume["source"]
            assert source.parent == COMPOSE_KAFKA_AUTH_DIR or source.is_file(), source


def test_the_files_stay_out_of_git_and_the_image_build() -> None:
    folder = COMPOSE_KAFKA_AUTH_DIR.relative_to(ROOT)
    assert f"/{folder}/" in (ROOT / ".gitignore").read_text().splitlines()
    assert f"{folder}/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_documented_command_makes_what_the_override_mounts(
    override: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (command,) = re.findall(r"python -m deploy_render\.compose_kafka ([^#\n]+)", OVERRIDE.read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"python -m deploy_render.compose_kafka {command.strip()}" in readme and UP in readme
    argv = shlex.split(command)
    assert argv[0] == str(COMPOSE_KAFKA_AUTH_DIR.relative_to(ROOT))
    assert "--world-readable" in argv, "every image runs as another user than the files' owner"
    assert main([str(tmp_path / "kafka-auth"), *argv[1:]]) == 0
    capsys.readouterr()
    for service in override["services"].values():
        for volume in service.get("volumes", []):
            source = ROOT / volume["source"]
            if source.parent == COMPOSE_KAFKA_AUTH_DIR:
                assert (tmp_path / "kafka-auth" / source.name).is_file(), source.name
