"""`docker compose up` of the repository's own docker-compose.yml on a real Docker engine, as a user runs it,
the public images replaced by stand-ins (standins/README.md). The tests share one project and run in order:
up and its order, poison records, a second plain up, the monitoring profile's Prometheus, a worker restart under
load, down and up, the mTLS override, down -v. Greetings are read from the host through the published Kafka
listener under read_committed."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from consumer.reading.topics import CONSUMER_GUARANTEES, topic_ends
from stack.config import REPO_ROOT
from tests.e2e.kafka_io import produce, read, read_greetings, requests, unique_names
from tests.support.kafka_clients import client_settings
from tests.support.prometheus import PrometheusClient
from tests.support.waiting import wait_for

from .project import ComposeProject

pytestmark = pytest.mark.e2e

GREETER_CONSUMER = str(Path(sys.executable).with_name("greeter-consumer"))
SIGKILLED = 137  # the exit code of a container that outlived its stop timeout
TLS_DIR = REPO_ROOT / "deploy" / "compose" / "tls"
# Inside the greeter container: /healthz over TLS without a client certificate (what went wrong), then with the
# greeter's own (the status).
TLS_PROBE = """
import os, ssl, urllib.request
context = ssl.create_default_context(cafile=os.environ["GREETER_TLS_CA"])
context.check_hostname = False
def status():
    with urllib.request.urlopen("https://127.0.0.1:8000/healthz", context=context, timeout=5) as response:
        return response.status
try:
    print(status())
except Exception as error:
    print(type(error).__name__)
context.load_cert_chain(os.environ["GREETER_TLS_CERT"], os.environ["GREETER_TLS_KEY"])
print(status())
"""


def started(container: dict) -> datetime:
    return datetime.fromisoformat(container["State"]["StartedAt"][:26])


def finished(container: dict) -> datetime:
    return datetime.fromisoformat(container["State"]["FinishedAt"][:26])


def dangling_volumes() -> set[str]:
    """The volumes no container uses."""
    listed = subprocess.run(["docker", "volume", "ls", "--quiet", "--filter", "dangling=true"], capture_output=True)
    return set(listed.stdout.decode().split())


def committed_greetings(project: ComposeProject) -> int:
    """Where `greetings` ends under read_committed, summed over its partitions: it grows as the egress commits
    greetings (a transaction that wrote nothing leaves no marker)."""
    return sum(topic_ends(client_settings(project.bootstrap, **CONSUMER_GUARANTEES), "greetings").values())


def verify_from_names(project: ComposeProject) -> subprocess.CompletedProcess[str]:
    """The product's verifier on the whole of `names`, `greetings` and `names-dlq`, the generator stopped."""
    project.run("stop", "generator")
    command = [GREETER_CONSUMER, "--bootstrap-servers", project.bootstrap, "verify", "--from-names"]
    return subprocess.run([*command, "--settle", "4", "--timeout", "120"], capture_output=True, text=True, timeout=300)


# The first test also waits for the set-up on a fresh machine: the engine and Compose installed (Compose is built
# from source, ~2 min), the base image bootstrapped, the stand-ins built.
@pytest.mark.timeout(1800)
def test_up_builds_once_and_starts_every_service_in_the_declared_order(project: ComposeProject) -> None:
    up = time.monotonic()
    project.run("up", "--build", "--detach", "--wait")
    print(f"[compose] up --build --wait: {time.monotonic() - up:.1f} s")
    containers = project.containers()
    states = {service: (c["State"]["Status"], c["State"]["ExitCode"]) for service, c in containers.items()}
    # Every service but the monitoring profile's (off by default).
    assert states == {
        "kafka": ("running", 0),
        "topics": ("exited", 0),
        "greeter": ("running", 0),
        "statefun-master": ("running", 0),
        "statefun-worker": ("running", 0),
        "generator": ("running", 0),
        "consumer": ("running", 0),
    }
    health = {service: c["State"].get("Health", {}).get("Status") for service, c in containers.items()}
    assert {service: status for service, status in health.items() if status} == {
        "kafka": "healthy",
        "greeter": "healthy",
        "statefun-master": "healthy",
    }
    # Each started after what it waits for: topics after Kafka, the runtime once the topics exist, the generator
    # once the job runs.
    assert started(containers["kafka"]) < started(containers["topics"])
    assert finished(containers["topics"]) <= started(containers["statefun-master"])
    assert started(containers["greeter"]) < started(containers["statefun-master"])
    assert started(containers["statefun-master"]) < started(containers["generator"])
    # One image for the three services that run it, built once.
    images = {containers[service]["Image"] for service in ("greeter", "generator", "consumer")}
    assert len(images) == 1, images
    # Greetings come out on the host's listener.
    names = unique_names(5)
    produce(project.bootstrap, "names", requests(names, 2))
    committed = read_greetings(project.bootstrap, names, 2, settle_s=0.0)
    assert committed.ok, committed.summary()


@pytest.mark.timeout(300)
def test_poison_records_from_the_host_land_in_the_dead_letter_topic(project: ComposeProject) -> None:
    key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    produce(project.bootstrap, "names", [(key, b"\xff\xff\xff\xff"), (key, b"")])
    letters = read(project.bootstrap, "names-dlq", {key}, 2, deadline_s=120, settle_s=2)
    assert len(letters) == 2, letters
    assert project.containers()["statefun-master"]["State"]["Status"] == "running"


@pytest.mark.timeout(300)
def test_a_second_plain_up_recreates_nothing_and_leaves_the_job_alone(project: ComposeProject) -> None:
    before = {service: c["Id"] for service, c in project.containers().items()}
    job = project.running_job()
    failures = project.rest.failure_count(job)
    up = project.run("up", "--detach", "--wait")
    assert "Recreate" not in up.stderr, up.stderr
    assert {service: c["Id"] for service, c in project.containers().items()} == before
    assert project.running_job() == job
    assert project.rest.failure_count(job) == failures


FUNCTION_IN = "flink_taskmanager_job_task_operator_functions_example_greeter_in"  # messages the function took
ALERTS = REPO_ROOT / "deploy" / "monitoring" / "alerts.yml"


@pytest.mark.timeout(300)
def test_the_monitoring_profiles_prometheus_scrapes_every_service_and_sees_the_greetings(
    project: ComposeProject,
) -> None:
    """Prometheus from the `monitoring` profile (Grafana cannot run here: no image of it, docs/monitoring-compose.md)
    beside the running stack, its API read from the host on the published port: every target up, the alert rules
    loaded, the function's counter moving with greetings. Removed with its volume after, so the tests after it find
    the stack as they would without it."""
    prometheus = PrometheusClient(f"http://127.0.0.1:{project.env['PROMETHEUS_HOST_PORT']}")
    up = time.monotonic()
    project.run("--profile", "monitoring", "up", "--detach", "--wait", "prometheus")
    try:
        expected = {"greeter": ["up"], "flink-jobmanager": ["up"], "flink-taskmanager": ["up"]}  # one worker
        wait_for("every scrape target up", lambda: prometheus.health_by_job() == expected, 60, every=1)
        print(f"[compose] monitoring: every target up {time.monotonic() - up:.1f} s after `up prometheus`")
        # The alert rules it evaluates: the mounted deploy/monitoring/alerts.yml, every rule of it.
        written = yaml.safe_load(ALERTS.read_text())["groups"]
        assert sorted(rule["name"] for rule in prometheus.rules()) == sorted(
            rule["alert"] for group in written for rule in group["rules"]
        )

        def taken() -> float:
            return sum(series.value for series in prometheus.query(FUNCTION_IN))

        wait_for("the function's message count in Prometheus", lambda: taken() > 0, 60, every=1)
        before = taken()
        names = unique_names(10)
        produce(project.bootstrap, "names", requests(names, 2))
        committed = read_greetings(project.bootstrap, names, 2, settle_s=0.0)
        assert committed.ok, committed.summary()
        # The greetings just read (and the generator's) show in the count Prometheus scraped.
        wait_for("the greetings counted in Prometheus", lambda: taken() >= before + 20, 60, every=1)
        print(f"[compose] monitoring: {FUNCTION_IN} {before:.0f} -> {taken():.0f}")
    finally:
        project.run("--profile", "monitoring", "rm", "--stop", "--force", "prometheus", check=False)
        subprocess.run(["docker", "volume", "rm", f"{project.name}_prometheus-data"], capture_output=True)


@pytest.mark.timeout(600)
def test_a_worker_restart_under_load_loses_and_duplicates_nothing(project: ComposeProject) -> None:
    job = project.running_job()
    failures = project.rest.failure_count(job)
    before = committed_greetings(project)
    wait_for("the generator's load to be greeted", lambda: committed_greetings(project) > before, 120, every=1)
    restart = time.monotonic()
    project.run("restart", "statefun-worker")
    restarted_s = time.monotonic() - restart
    wait_for("the lost worker in the job's failures", lambda: project.rest.failure_count(job) > failures, 120, every=1)
    assert project.running_job() == job  # the same job recovered from its checkpoint
    print(
        f"[compose] restart statefun-worker: {restarted_s:.1f} s; job RUNNING {time.monotonic() - restart:.1f} s after"
    )
    # And carried on: requests sent now are greeted (the generator's load goes on alongside).
    names = unique_names(5)
    produce(project.bootstrap, "names", requests(names, 1))
    committed = read_greetings(project.bootstrap, names, 1, settle_s=0.0)
    assert committed.ok, committed.summary()
    verified = verify_from_names(project)
    print(f"[compose] {verified.stdout.splitlines()[0] if verified.stdout else verified.stderr[-500:]}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verify: OK: "), verified.stdout
    assert "dead letters: OK: 2 expected" in verified.stdout, verified.stdout


@pytest.mark.timeout(600)
def test_down_then_up_continues_every_count_and_no_container_is_killed(project: ComposeProject) -> None:
    names = unique_names(10)
    produce(project.bootstrap, "names", requests(names, 3))
    committed = read_greetings(project.bootstrap, names, 3, settle_s=0.0)
    assert committed.ok, committed.summary()
    project.run("stop")
    exit_codes = {service: c["State"]["ExitCode"] for service, c in project.containers().items()}
    assert SIGKILLED not in exit_codes.values(), exit_codes
    volumes_before = dangling_volumes()
    project.run("down")
    # Only the two named volumes stay: no anonymous volume of an image's VOLUME is left behind.
    assert dangling_volumes() - volumes_before == {f"{project.name}_kafka-data", f"{project.name}_checkpoints"}
    up = time.monotonic()
    project.run("up", "--detach", "--wait")
    print(f"[compose] up --wait after down: {time.monotonic() - up:.1f} s")
    produce(project.bootstrap, "names", requests(names, 2))
    continued = read_greetings(project.bootstrap, names, 5, settle_s=2.0)  # 4 and 5, after 1..3
    assert continued.ok, continued.summary()


@pytest.mark.timeout(600)
def test_the_mtls_override_comes_up_and_the_greeter_refuses_a_client_without_a_certificate(
    project: ComposeProject,
) -> None:
    assert not TLS_DIR.exists(), f"{TLS_DIR} exists: this test mints its own certificates there"
    subprocess.run(
        [sys.executable, "-m", "certs.tls", str(TLS_DIR), "--host", "greeter", "--world-readable"],
        check=True,
        capture_output=True,
    )
    try:
        project.files.append("docker-compose.mtls.yml")
        project.run("up", "--detach", "--wait")
        names = unique_names(5)
        produce(project.bootstrap, "names", requests(names, 2))
        committed = read_greetings(project.bootstrap, names, 2, settle_s=0.0)
        assert committed.ok, committed.summary()
        probe = project.run("exec", "-T", "greeter", "python", "-c", TLS_PROBE).stdout.split()
        # Under TLS 1.3 the server checks the client's certificate after the handshake and closes the connection.
        assert probe[0] in {"SSLError", "RemoteDisconnected", "ConnectionResetError"}, probe
        assert probe[1] == "200", probe  # the same request with the certificate is served
    finally:
        project.run("down", check=False)
        project.files.remove("docker-compose.mtls.yml")
        for file in TLS_DIR.iterdir():
            file.unlink()
        TLS_DIR.rmdir()


@pytest.mark.timeout(300)
def test_down_with_volumes_leaves_nothing_behind(project: ComposeProject) -> None:
    project.run("up", "--detach", "--wait")
    project.run("down", "--volumes")
    label = f"label=com.docker.compose.project={project.name}"
    for kind in (["ps", "--all"], ["volume", "ls"], ["network", "ls"]):
        left = subprocess.run(["docker", *kind, "--quiet", "--filter", label], capture_output=True, text=True)
        assert left.stdout.split() == [], (kind, left.stdout)
