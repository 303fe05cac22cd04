"""deploy/k8s applied as a user applies it, for tests/k8s/test_manifests.py: the user's own kustomization (the demo,
a Kafka for it, the registry component edited to name where the images are), `kubectl apply -k`, waits with
deadlines, a `kubectl port-forward` to Kafka for tools on this machine, and what the pods say when a wait fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer

from deploy_render.manifests import FLINK_CONF, K8sVariant, render_k8s_flink_conf
from stack import procs
from stack.config import REPO_ROOT, StackConfig
from stack.rest import FlinkRest, RestError
from tests.support.net import free_port

from .cluster import Cluster
from .stack_images import GREETER_TAG, REGISTRY

K8S: Final = REPO_ROOT / "deploy" / "k8s"
KAFKA_OVERLAY: Final = Path(__file__).parent / "overlays" / "kafka"
MASTER: Final = "app.kubernetes.io/component=master"
WORKER: Final = "app.kubernetes.io/component=worker"
DEPLOYMENTS: Final = ("kafka", "greeter", "statefun-master", "statefun-worker")
VERIFY_IMAGE: Final = f"{REGISTRY}/statefun-greeter:{GREETER_TAG}"
# What deploy/k8s/components/registry names as the user's registry and greeter tag, to be edited (its README).
COMPONENT_REGISTRY: Final = "newName: registry.example.com/greeter/"
COMPONENT_GREETER_TAG: Final = 'newTag: "1.0.0"'


@dataclass(frozen=True)
class UserSettings:
    """What the user's kustomization changes, as the README and docs/operations.md tell them to: the greeter's tag in
    their copy of components/registry, Flink's parallelism (a flink-conf.yaml rendered by deploy_render/manifests.py
    and the workers' replicas, "Changing Flink's parallelism"), and Flink's Kubernetes high availability (the
    component)."""

    greeter_tag: str = GREETER_TAG
    parallelism: int | None = None  # None: the base's
    high_availability: bool = False


def write_registry_component(folder: Path, greeter_tag: str = GREETER_TAG) -> str:
    """The user's copy of components/registry in `folder`, edited as deploy/k8s/README.md says (the registry and the
    greeter's tag): its path relative to `folder`."""
    component = folder / "components" / "registry"
    component.mkdir(parents=True)
    text = (K8S / "components" / "registry" / "kustomization.yaml").read_text()
    assert text.count(COMPONENT_REGISTRY) == 3, "the registry component no longer names its registry three times"
    assert text.count(COMPONENT_GREETER_TAG) == 1, "the registry component no longer names the greeter's tag once"
    edited = text.replace(COMPONENT_REGISTRY, f"newName: {REGISTRY}/").replace(
        COMPONENT_GREETER_TAG, f'newTag: "{greeter_tag}"'
    )
    (component / "kustomization.yaml").write_text(edited)
    return "components/registry"


def write_kustomization(folder: Path, kafka_port: int, settings: UserSettings = UserSettings()) -> Path:
    """The user's kustomization in `folder`: the demo overlay and the test Kafka as resources, and their own copy of
    the registry component, edited as deploy/k8s/README.md says (the registry and the greeter's tag), included with
    `components:`, with `settings`. The Kafka's advertised address for tools on this machine is the port-forward's
    port."""
    shutil.rmtree(folder, ignore_errors=True)
    components = [write_registry_component(folder, settings.greeter_tag)]
    if settings.high_availability:
        components.append(os.path.relpath(K8S / "components" / "high-availability", folder))
    parallelism = ""
    if settings.parallelism is not None:
        # Step 1 of docs/operations.md: the variant's flink-conf.yaml rendered by deploy_render's own function (as
        # `python -m deploy_render` renders overlays/prod's), the workers' replicas set to the same number.
        variant = K8sVariant(dataclasses.replace(StackConfig(), parallelism=settings.parallelism), tls=False)
        (folder / FLINK_CONF).write_text(render_k8s_flink_conf(variant))
        parallelism = f"""\
configMapGenerator:
  - name: statefun-flink-conf
    behavior: replace
    files:
      - {FLINK_CONF}
replicas:
  - name: statefun-worker
    count: {settings.parallelism}
"""
    listed = "".join(f"  - {name}\n" for name in components)
    (folder / "kustomization.yaml").write_text(
        f"""\
# Written by tests/k8s/demo.py: the demo against an in-cluster Kafka, every image from {REGISTRY}.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {os.path.relpath(K8S / "overlays" / "demo", folder)}
  - {os.path.relpath(KAFKA_OVERLAY, folder)}
components:
{listed}{parallelism}patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: kafka
      spec:
        template:
          spec:
            containers:
              - name: kafka
                env:
                  - name: KAFKA_ADVERTISED_LISTENERS
                    value: INTERNAL://kafka:9092,EXTERNAL://127.0.0.1:{kafka_port}
"""
    )
    return folder


def rfc3339(stamp: str) -> datetime:
    """A Kubernetes timestamp (`2026-12-07T03:40:01Z`, second resolution)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class Kubectl:
    """The cluster's kubectl on the default namespace, with deadlines that say what the pods were doing."""

    def __init__(self, cluster: Cluster, namespace: str | None = None) -> None:
        self.cluster = cluster
        self.namespace = namespace  # None: the default namespace

    def __call__(self, *argv: str, timeout: float = 120, check: bool = True) -> str:
        where = ("-n", self.namespace) if self.namespace else ()
        return self.cluster.kubectl(*where, *argv, timeout=timeout, check=check)

    def json(self, *argv: str) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self("get", *argv, "-o", "json"))
        return parsed

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json(kind, "-l", selector)["items"]
        return items

    def one(self, kind: str, selector: str) -> dict[str, Any]:
        items = self.items(kind, selector)
        assert len(items) == 1, f"{len(items)} {kind} labelled {selector}: {[i['metadata']['name'] for i in items]}"
        return items[0]

    def state(self) -> str:
        """What a user looks at when something does not come up: the pods and the latest events."""
        pods = self("get", "pods", "-o", "wide", check=False)
        events = self("get", "events", "--sort-by=.lastTimestamp", check=False).splitlines()
        return f"{pods}\nlatest events:\n" + "\n".join(events[-25:])

    def waits(self, *argv: str, timeout: float) -> float:
        """`kubectl ARGV --timeout=Ns` (rollout status, wait): the seconds it took; fails with the pods' state."""
        started = time.monotonic()
        try:
            self(*argv, f"--timeout={timeout:.0f}s", timeout=timeout + 30)
        except RuntimeError as error:
            raise AssertionError(f"kubectl {' '.join(argv)}: {error}\n{self.state()}") from error
        return time.monotonic() - started

    def until(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        """Poll `condition` every second: the seconds it took; fails naming `what`, with the pods' state."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not so after {timeout:.0f} s\n{self.state()}")
            time.sleep(1)
        return time.monotonic() - started

    def save_logs(self, folder: Path) -> None:
        """Every pod's containers' logs, the events and the objects, into `folder` (emptied first), for the report."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "objects.txt").write_text(self("get", "all,configmaps,pvc", "-o", "wide", check=False))
        (folder / "events.txt").write_text(self("get", "events", "--sort-by=.lastTimestamp", check=False))
        for pod in self.json("pods")["items"]:
            name = pod["metadata"]["name"]
            logs = self("logs", name, "--all-containers", "--prefix", "--timestamps", check=False, timeout=60)
            (folder / f"{name}.log").write_text(logs)


class PortForward:
    """`kubectl port-forward TARGET 127.0.0.1:PORT:REMOTE`, started and stopped by its PID."""

    def __init__(
        self, cluster: Cluster, target: str, port: int, remote: int, log: Path, namespace: str = "default"
    ) -> None:
        argv = [
            str(cluster.bin_dir / "kubectl"),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--cache-dir={cluster.layout.kube_cache}",
            f"--namespace={namespace}",
            "port-forward",
            "--address=127.0.0.1",
            target,
            f"{port}:{remote}",
        ]
        self.port = port
        self.proc = procs.spawn("port-forward", argv, log)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not procs.is_running(self.proc):
                raise AssertionError(f"kubectl port-forward exited: {Path(self.proc.log).read_text()[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"kubectl port-forward did not listen on {self.port} within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> str:
        return procs.stop(self.proc, timeout=10)


def first_committed(
    bootstrap: str, topic: str, deadline_s: float, security: Mapping[str, str] | None = None, group_prefix: str = "k8s-"
) -> float:
    """Seconds until a read_committed consumer, reading `topic` from its start, is handed a record; AssertionError
    with the last client error once `deadline_s` passes. `security`: librdkafka's settings of a secured Kafka's
    client, whose group must start with `group_prefix`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group_prefix}{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            **(security or {}),
        }
    )
    started = time.monotonic()
    last_error = "none"
    try:
        consumer.subscribe([topic])
        while time.monotonic() - started < deadline_s:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                last_error = str(message.error())
                continue
            return time.monotonic() - started
    finally:
        consumer.close()
    raise AssertionError(f"no committed record on {topic} within {deadline_s:.0f} s (last client error: {last_error})")


class MasterRest:
    """The master's REST API through `kubectl port-forward service/statefun-master`. A port-forward stays with the
    pod it picked, so when the master is replaced (deleted, rolled, restarted after its job ended) it is started
    again on the next call that finds it gone."""

    def __init__(self, cluster: Cluster, log_dir: Path) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.forward: PortForward | None = None
        self.started = 0

    def __call__(self, deadline_s: float = 180) -> FlinkRest:
        """A client of a REST API that answers (the master restarting is waited for, up to `deadline_s`)."""
        end = time.monotonic() + deadline_s
        while True:
            if self.forward is not None and procs.is_running(self.forward.proc):
                rest = FlinkRest(f"http://127.0.0.1:{self.forward.port}", timeout=10)
                try:
                    rest.overview()
                    return rest
                except RestError:
                    pass
            self.stop()
            if time.monotonic() > end:
                raise AssertionError(f"the master's REST API did not answer within {deadline_s:.0f} s")
            self.started += 1
            self.forward = PortForward(
                self.cluster, "service/statefun-master", free_port(), 8081,
                self.log_dir / f"port-forward-rest-{self.started}.log",
            )  # fmt: skip
            try:
                self.forward.wait(timeout=30)
            except AssertionError:
                time.sleep(2)  # no master pod runs yet, so the forward exited: try again

    def stop(self) -> None:
        if self.forward is not None:
            self.forward.stop()
            self.forward = None


@dataclass
class Demo:
    """The applied demo: kubectl, the images, Kafka for tools on this machine through `kubectl port-forward`, the
    master's REST API, the user's kustomization (rewritten and applied again by the operations' tests) and what it
    rendered at first."""

    kubectl: Kubectl
    images_names: tuple[str, ...]
    bootstrap: str
    rest: MasterRest
    folder: Path
    kafka_port: int
    rendered: list[dict[str, Any]]
    timings: dict[str, float]
    settings: UserSettings = UserSettings()

    def running_job(self) -> str:
        jobs = [job["jid"] for job in self.rest().get("/jobs/overview")["jobs"] if job["state"] == "RUNNING"]
        assert len(jobs) == 1, f"running jobs: {jobs}"
        return str(jobs[0])

    def apply(self, settings: UserSettings) -> str:
        """The user's kustomization rewritten with `settings` and applied again: kubectl's report."""
        self.settings = settings
        write_kustomization(self.folder, self.kafka_port, settings)
        return self.kubectl("apply", "-k", str(self.folder))

    def stop_generators(self) -> None:
        """See stop_generators."""
        stop_generators(self.kubectl)

    def verify(self, name: str) -> tuple[int, int]:
        """See verify_in_cluster."""
        return verify_in_cluster(self.kubectl, name, ["--env=GREETER_BOOTSTRAP_SERVERS=kafka:9092"])


def stop_generators(kubectl: Kubectl) -> None:
    """The demo's generator Jobs stopped as their manifest says (SIGTERM flushes), and waited until their pods are
    gone: `names` then holds all they will send. Every apply starts one again while none exists (README, "The
    Jobs")."""
    kubectl(
        "delete", "job", "-l", "app.kubernetes.io/name=generator", "--cascade=foreground", "--timeout=120s",
        timeout=150,
    )  # fmt: skip
    generator = "app.kubernetes.io/name=generator"
    kubectl.until("the generator's pods gone", lambda: not kubectl.items("pods", generator), 120)


VERIFY_ARGS: Final = ("greeter-consumer", "verify", "--from-names", "--settle", "4", "--timeout", "120")


def verify_in_cluster(kubectl: Kubectl, name: str, run_options: list[str]) -> tuple[int, int]:
    """The product's verifier (`greeter-consumer verify --from-names`) run in the cluster from the greeter image,
    as the README runs the consumer there (`kubectl run` with `run_options`: its broker, or the overrides that mount
    a login), once nothing more is sent: every valid request in `names` greeted exactly once in `greetings` under
    read_committed, every poison record in `names-dlq`. The greetings and names it counted; AssertionError with its
    report when it does not pass."""
    kubectl("run", name, "--restart=Never", f"--image={VERIFY_IMAGE}", *run_options, "--", *VERIFY_ARGS)

    def finished() -> bool:
        return str(kubectl.json(f"pod/{name}")["status"]["phase"]) in ("Succeeded", "Failed")

    kubectl.until(f"the verifier pod {name} finished", finished, timeout=300)
    report = kubectl("logs", name)
    (status,) = kubectl.json(f"pod/{name}")["status"]["containerStatuses"]
    print(f"[k8s] {name}: {report.strip()}")
    kubectl("delete", "pod", name, "--wait=false")
    assert status["state"]["terminated"]["exitCode"] == 0, report
    counted = re.search(r"verify: OK: (\d+) greetings, (\d+) names", report)
    assert counted, report
    return int(counted[1]), int(counted[2])
