"""docker-compose.kafka-sasl.yml for real, as its header says to run it: the files made by `python -m
deploy_render.compose_kafka deploy/compose/kafka-auth --world-readable`, then `up --build` of both files. The
pipeline is exact through the secured broker (the product's generator in its container and on the host,
`greeter-consumer verify --from-names` on the host, both with the folder's credentials files); the broker holds
exactly the ACLs of stack/kafka_auth.py; a plaintext client is refused in one line; no password reaches a log or a
container's command line or environment. Its own project, after test_compose_stack.py's: a broker volume formatted
without the SCRAM users could not serve it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# re-exported by confluent_kafka.admin without __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from clitools.kafka_security import KafkaSecurity
from deploy_render.compose_kafka import COMPOSE_KAFKA_AUTH_DIR, ComposeKafkaFiles
from stack.config import REPO_ROOT
from stack.kafka_auth import ADMIN, CONSUMER, GENERATOR, bindings
from tests.support.net import free_port

from .conftest import LOGS
from .project import ComposeProject

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent
OVERRIDE = "docker-compose.kafka-sasl.yml"
NAMES, PER_NAME = 20, 10
FILES = ComposeKafkaFiles(COMPOSE_KAFKA_AUTH_DIR)


@pytest.fixture(scope="module")
def secured(standin_images: dict[str, str]) -> Iterator[ComposeProject]:
    """The secured project, up with the files the documented command makes; taken down with its volumes and the
    files removed after."""
    assert not COMPOSE_KAFKA_AUTH_DIR.exists(), f"{COMPOSE_KAFKA_AUTH_DIR} exists: this test makes its own files there"
    env = {
        **standin_images,
        "KAFKA_HOST_PORT": str(free_port()),
        "FLINK_UI_HOST_PORT": str(free_port()),
        "GREETER_RATE": "50",
        "GREETER_NAMES": "20",
    }
    compose = ComposeProject("greeter-compose-sasl-test", env, ["docker-compose.yml", OVERRIDE])
    compose.run("down", "--volumes", "--remove-orphans")
    # The command the override's header documents, as it says.
    (command,) = re.findall(
        r"\.venv/bin/python -m (deploy_render\.compose_kafka [^#\n]+)", (REPO_ROOT / OVERRIDE).read_text()
    )
    subprocess.run([sys.executable, "-m", *command.split()], cwd=REPO_ROOT, check=True, capture_output=True)
    try:
        up = time.monotonic()
        compose.run("up", "--build", "--detach", "--wait")
        print(f"[compose-sasl] up --build --wait: {time.monotonic() - up:.1f} s")
        yield compose
    finally:
        compose.save_logs(LOGS / f"{compose.name}.log")
        compose.run("down", "--volumes", "--remove-orphans", check=False)
        for path in COMPOSE_KAFKA_AUTH_DIR.iterdir():
            path.unlink()
        COMPOSE_KAFKA_AUTH_DIR.rmdir()


def as_principal(project: ComposeProject, principal: str) -> list[str]:
    """A greeter CLI's Kafka flags on the host: the published listener, the principal's file and the CA."""
    return [
        "--bootstrap-servers",
        project.bootstrap,
        "--kafka-client-config",
        str(FILES.client_file(principal)),
        "--ssl-ca",
        str(FILES.ca),
    ]


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.timeout(1800)
def test_the_secured_stack_runs_the_pipeline_exactly(secured: ComposeProject) -> None:
    containers = secured.containers()
    states = {service: (c["State"]["Status"], c["State"]["ExitCode"]) for service, c in containers.items()}
    assert states == {
        "kafka": ("running", 0),
        "topics": ("exited", 0),
        "kafka-acls": ("exited", 0),
        "greeter": ("running", 0),
        "statefun-master": ("running", 0),
        "statefun-worker": ("running", 0),
        "generator": ("running", 0),
        "consumer": ("running", 0),
    }
    # The product's generator on the host, as the generator principal.
    load = ["--names", str(NAMES), "--seed", "29", "--count", str(NAMES * PER_NAME), "--no-progress"]
    generator = run([str(VENV_BIN / "greeter-generator"), *as_principal(secured, GENERATOR), *load])
    assert generator.returncode == 0, generator.stderr
    assert f"delivered {NAMES * PER_NAME}, failed 0" in generator.stderr
    time.sleep(5)  # the generator service's own load (50 requests/s) flows alongside
    # The generator service stops cleanly: every record it sent was acknowledged (its exit code says so).
    secured.run("stop", "generator")
    assert secured.containers()["generator"]["State"]["ExitCode"] == 0, secured.run("logs", "generator").stdout
    verify = run(
        [
            str(VENV_BIN / "greeter-consumer"),
            *as_principal(secured, CONSUMER),
            "verify",
            "--from-names",
            "--settle",
            "4",
            "--timeout",
            "120",
        ]
    )
    print(f"[compose-sasl] {verify.stdout.splitlines()[0] if verify.stdout else verify.stderr[-500:]}")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("verify: OK: "), verify.stdout
    # The consumer service, logged in as the consumer in its container, shows the greetings too.
    assert "Welcome " in secured.run("logs", "--no-color", "consumer").stdout


@pytest.mark.timeout(300)
def test_the_broker_holds_exactly_the_local_stacks_acls(secured: ComposeProject) -> None:
    admin = KafkaSecurity.from_client_file(FILES.client_file(ADMIN)).librdkafka()
    client = AdminClient(
        {"bootstrap.servers": secured.bootstrap, **admin, "ssl.ca.location": str(FILES.ca), "log_level": 0}
    )
    # None matches any name, principal and host (the stubs say str).
    anything: Any = None
    every_acl = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    described = client.describe_acls(every_acl, request_timeout=15).result()
    assert sorted(map(str, described)) == sorted(map(str, bindings()))


@pytest.mark.timeout(300)
def test_a_plaintext_client_is_refused_in_one_line(secured: ComposeProject) -> None:
    verify = run(
        [str(VENV_BIN / "greeter-consumer"), "--bootstrap-servers", secured.bootstrap, "verify", "--timeout", "30"],
        timeout=120,
    )
    assert verify.returncode != 0, verify.stdout
    lines = verify.stderr.strip().splitlines()
    assert len(lines) == 1, verify.stderr
    assert "expects TLS or SASL" in lines[0], lines[0]


@pytest.mark.timeout(300)
def test_no_password_reaches_a_log_or_a_containers_command_line_or_environment(secured: ComposeProject) -> None:
    passwords = _passwords()
    assert len(passwords) == 5, "admin, runtime, generator, consumer and the controller"
    logs = secured.run("logs", "--no-color").stdout
    assert "Welcome " in logs and "SASL" in logs  # the logs are the secured stack's, and they say something
    inspected = secured.containers()
    for password in passwords:
        assert password not in logs
        for service, container in inspected.items():
            config: dict[str, Any] = container["Config"]
            shown = [*(config.get("Env") or []), *(config.get("Cmd") or []), *(config.get("Entrypoint") or [])]
            shown += container.get("Args") or []
            assert not [item for item in shown if password in item], service
    assert "LoginModule required" not in logs


def _passwords() -> set[str]:
    """Every password the folder holds: the credentials and JAAS files' and the SCRAM users'."""
    text = "\n".join(path.read_text() for path in FILES.all if path.suffix in {".properties", ".jaas", ".args"})
    found = re.findall(r'(?:sasl\.password=|password="|password=)([A-Za-z0-9_-]{16,})', text)
    return set(found)
