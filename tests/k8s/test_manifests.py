"""deploy/k8s on a real cluster, applied as deploy/k8s/README.md tells a user: `kubectl apply -k
deploy/k8s/storage/single-node`, then the demo through the user's own kustomization, which adds a Kafka (the test
overlay overlays/kafka, where base/kafka.env points) and includes their copy of components/registry edited to name
where the images are. No registry: the greeter image built from the repository's Dockerfile and the stand-ins of
tests/compose are imported into the cluster's containerd (stack_images.py), and the pods find them there under the
names the component gives. The tests share one applied demo and run in order: the images, the order of the topics
Job and the runtime, every pod Ready, poison records dead-lettered, then the generator stopped as its manifest says
and everything it sent checked by the product's verifier, run in the cluster from the greeter image.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import yaml

from protos.generated.greeter_pb2 import DeadLetter, DeadLetterReason
from stack.rest import FlinkRest
from tests.e2e.kafka_io import produce, read
from tests.e2e.test_dead_letters import poison_corpus
from tests.support.net import free_port

from .cluster import Cluster
from .conftest import RUN
from .demo import K8S, Kubectl, PortForward, first_committed, rfc3339, write_kustomization
from .stack_images import REGISTRY, StackImages

pytestmark = pytest.mark.timeout(600)

RUNTIME = "app.kubernetes.io/name=statefun"
MASTER = "app.kubernetes.io/component=master"
DEPLOYMENTS = ("kafka", "greeter", "statefun-master", "statefun-worker")
GREETER_MIN_REPLICAS = 2  # base/greeter.yaml's HorizontalPodAutoscaler
VERIFY_IMAGE = f"{REGISTRY}/statefun-greeter:local"


@dataclass
class Demo:
    kubectl: Kubectl
    images: StackImages
    bootstrap: str  # Kafka for tools on this machine, through `kubectl port-forward`
    rest: FlinkRest  # the master's REST API through `kubectl port-forward service/statefun-master`
    rendered: list[dict[str, Any]]  # what `kubectl kustomize` made of the user's kustomization
    timings: dict[str, float] = field(default_factory=dict)

    def running_job(self) -> str:
        jobs = [job["jid"] for job in self.rest.get("/jobs/overview")["jobs"] if job["state"] == "RUNNING"]
        assert len(jobs) == 1, f"running jobs: {jobs}"
        return str(jobs[0])


def since(start: float) -> float:
    return round(time.monotonic() - start, 1)


@pytest.fixture(scope="module")
def demo(stack_images: StackImages, cluster: Cluster) -> Iterator[Demo]:
    """The images imported, the storage and the demo applied, and waited for as a user waits: each Deployment's
    rollout, the topics Job, the master Ready (its job runs all its tasks). Apply -> first greeting is timed from the
    machine through a port-forward to Kafka."""
    kubectl = Kubectl(cluster)
    timings = {"images_built_and_saved_s": stack_images.seconds}
    started = time.monotonic()
    cluster.import_image(stack_images.archive)
    stack_images.archive.unlink()  # containerd keeps its own copy
    timings["images_imported_s"] = since(started)

    kubectl("apply", "-k", str(K8S / "storage" / "single-node"))
    kafka_port, rest_port = free_port(), free_port()
    folder = write_kustomization(RUN / "demo", kafka_port)
    rendered = kubectl("kustomize", str(folder))
    (folder / "rendered.yaml").write_text(rendered)
    forwards: list[PortForward] = []
    applied = time.monotonic()
    kubectl("apply", "-k", str(folder))
    try:
        kubectl.waits("rollout", "status", "deployment/kafka", timeout=300)
        timings["apply_to_kafka_ready_s"] = since(applied)
        kubectl.waits("wait", "--for=condition=complete", "job", "-l", "app.kubernetes.io/name=topics", timeout=300)
        timings["apply_to_topics_job_complete_s"] = since(applied)
        forwards.append(PortForward(cluster, "deployment/kafka", kafka_port, 9094, RUN / "port-forward-kafka.log"))
        forwards[-1].wait()
        bootstrap = f"127.0.0.1:{kafka_port}"
        first_committed(bootstrap, "greetings", deadline_s=600)
        timings["apply_to_first_greeting_s"] = since(applied)
        for deployment in DEPLOYMENTS[1:]:
            kubectl.waits("rollout", "status", f"deployment/{deployment}", timeout=300)
        kubectl.waits("wait", "--for=condition=Ready", "pod", "-l", MASTER, timeout=300)
        timings["apply_to_rolled_out_s"] = since(applied)
        forwards.append(PortForward(cluster, "service/statefun-master", rest_port, 8081, RUN / "port-forward-rest.log"))
        forwards[-1].wait()
        print(f"[k8s manifests] {json.dumps(timings)}")
        (RUN / "manifests-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        yield Demo(
            kubectl,
            stack_images,
            bootstrap,
            FlinkRest(f"http://127.0.0.1:{rest_port}"),
            [doc for doc in yaml.safe_load_all(rendered) if doc],
            timings,
        )
    finally:
        for forward in forwards:
            forward.stop()
        kubectl.save_logs(RUN / "logs")


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Kind/name -> pod spec of every workload."""
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    }


def started_at(status: dict[str, Any]) -> datetime:
    """When a container first started: its earlier run's start if it restarted."""
    runs = [status.get("lastState", {}).get("terminated"), status["state"].get("running")]
    return min(rfc3339(run["startedAt"]) for run in runs if run)


# The first test pays for the stack coming up (about 3 minutes with the images built), and when this module runs
# alone, for the images' and the cluster's set-up too (on a new machine: the Kubernetes build, about 15 minutes).
@pytest.mark.timeout(3600)
def test_every_container_runs_the_image_the_registry_component_names(demo: Demo) -> None:
    templates = pod_templates(demo.rendered)
    assert {"Deployment/kafka", "Deployment/greeter", "Deployment/statefun-master"} <= set(templates)
    in_manifests = {
        f"{workload} {container['name']}": (container["image"], container.get("imagePullPolicy"))
        for workload, spec in templates.items()
        for container in spec.get("initContainers", []) + spec["containers"]
    }
    # The component moved every image, init containers and the test's Kafka included, to the imported ones; none
    # is pulled (IfNotPresent, the default for a tag other than `latest`).
    assert {name: image for name, (image, _) in in_manifests.items() if image not in demo.images.names} == {}
    assert {name: policy for name, (_, policy) in in_manifests.items() if policy not in (None, "IfNotPresent")} == {}
    ran = {
        f"{pod['metadata']['name']} {status['name']}": status["image"]
        for pod in demo.kubectl.json("pods")["items"]
        for status in pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    }
    assert ran, "no pod reported a container"
    assert {name: image for name, image in ran.items() if image not in demo.images.names} == {}


def test_the_topics_job_completes_before_the_runtime_starts(demo: Demo) -> None:
    job = demo.kubectl.one("jobs", "app.kubernetes.io/name=topics")
    pods = [
        p for p in demo.kubectl.items("pods", "app.kubernetes.io/name=topics") if p["status"]["phase"] == "Succeeded"
    ]
    assert job["status"].get("succeeded") == 1, job["status"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    (topics,) = pods[0]["status"]["containerStatuses"]
    topics_done = rfc3339(topics["state"]["terminated"]["finishedAt"])
    master = demo.kubectl.one("pods", MASTER)
    (wait,) = master["status"]["initContainerStatuses"]
    (runtime,) = master["status"]["containerStatuses"]
    print(
        f"[k8s manifests] topics Job: pod done {topics_done:%X}, complete {job['status']['completionTime']}; master: "
        f"waited for topics until {wait['state']['terminated']['finishedAt']}, started {started_at(runtime):%X}"
    )

    assert wait["name"] == "wait-for-topics"
    assert wait["state"]["terminated"]["exitCode"] == 0
    # Second resolution: the master's container started in the same second as the last topic was made, or later.
    assert topics_done <= started_at(runtime)


def test_every_pod_becomes_ready(demo: Demo) -> None:
    def greeters_ready() -> bool:
        deployment = demo.kubectl.json("deployment/greeter")
        return bool(deployment["status"].get("readyReplicas", 0) >= GREETER_MIN_REPLICAS)

    # The autoscaler raises the greeter from the Deployment's default 1 to its minimum (no metrics are needed).
    demo.kubectl.until(f"{GREETER_MIN_REPLICAS} greeters ready", greeters_ready, timeout=120)
    pods = demo.kubectl.json("pods")["items"]
    by_phase: dict[str, list[str]] = {}
    not_ready, restarted = [], {}
    for pod in pods:
        name, status = pod["metadata"]["name"], pod["status"]
        by_phase.setdefault(status["phase"], []).append(name)
        owners = {owner["kind"] for owner in pod["metadata"].get("ownerReferences", [])}
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if "Job" not in owners and conditions.get("Ready") != "True":
            not_ready.append(name)
        for container in status.get("containerStatuses", []):
            if container["restartCount"] and "Job" not in owners:
                restarted[f"{name} {container['name']}"] = container["restartCount"]
    print(f"[k8s manifests] pods by phase: {by_phase}")

    for deployment in DEPLOYMENTS:
        spec = demo.kubectl.json(f"deployment/{deployment}")
        assert spec["status"].get("readyReplicas") == spec["spec"]["replicas"], (deployment, spec["status"])
    assert not_ready == [], demo.kubectl.state()
    assert restarted == {}, demo.kubectl.state()
    assert set(by_phase) <= {"Running", "Succeeded"}, by_phase  # the Jobs' pods run or have succeeded
    assert demo.running_job()


def test_poison_records_land_in_the_dead_letter_topic(demo: Demo) -> None:
    job = demo.running_job()
    failures = demo.rest.failure_count(job)
    poison = poison_corpus(uuid.uuid4().hex[:8])

    produce(demo.bootstrap, "names", [(key, value) for key, (value, _reason) in poison.items()])
    letters = read(demo.bootstrap, "names-dlq", set(poison), len(poison), deadline_s=120, settle_s=4)

    assert sorted(r.key for r in letters) == sorted(poison), "one dead letter per poison record, keyed by its key"
    for record in letters:
        letter = DeadLetter.FromString(record.value)
        value, reason = poison[record.key]
        assert DeadLetterReason.Name(letter.reason) == DeadLetterReason.Name(reason), letter.detail
        assert letter.value == value, "the original bytes are kept"
    assert demo.running_job() == job
    assert demo.rest.failure_count(job) == failures, "the job failed while the poison records went through"


def test_the_generators_names_come_out_as_greetings_exactly_once(demo: Demo) -> None:
    # Stopped as its manifest says (SIGTERM flushes), so that `names` holds all it will: the verifier's input.
    generator = demo.kubectl.one("jobs", "app.kubernetes.io/name=generator")
    assert not generator["status"].get("succeeded"), "the generator finished: it runs 10 minutes"
    demo.kubectl(
        "delete", "job", "-l", "app.kubernetes.io/name=generator", "--cascade=foreground", "--timeout=120s", timeout=150
    )
    demo.kubectl.until(
        "the generator's pods gone", lambda: not demo.kubectl.items("pods", "app.kubernetes.io/name=generator"), 120
    )

    # The product's verifier from the greeter image, in the cluster, as the README runs the consumer there.
    demo.kubectl(
        "run", "verify", "--restart=Never", f"--image={VERIFY_IMAGE}", "--env=GREETER_BOOTSTRAP_SERVERS=kafka:9092",
        "--", "greeter-consumer", "verify", "--from-names", "--settle", "4", "--timeout", "120",
    )  # fmt: skip

    def finished() -> bool:
        return str(demo.kubectl.json("pod/verify")["status"]["phase"]) in ("Succeeded", "Failed")

    demo.kubectl.until("the verifier pod finished", finished, timeout=300)
    report = demo.kubectl("logs", "verify")
    (status,) = demo.kubectl.json("pod/verify")["status"]["containerStatuses"]
    print(f"[k8s manifests] {report.strip()}")

    assert status["state"]["terminated"]["exitCode"] == 0, report
    counted = re.search(r"verify: OK: (\d+) greetings, (\d+) names", report)
    assert counted, report
    assert int(counted[1]) >= 10 and int(counted[2]) >= 1, report
