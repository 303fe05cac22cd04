"""deploy/k8s on a real cluster, applied as deploy/k8s/README.md tells a user: `kubectl apply -k
deploy/k8s/storage/single-node`, then the demo through the user's own kustomization, which adds a Kafka (the test
overlay overlays/kafka, where base/kafka.env points) and includes their copy of components/registry edited to name
where the images are. No registry: the greeter image built from the repository's Dockerfile and the stand-ins of
tests/compose are imported into the cluster's containerd (stack_images.py), and the pods find them there under the
names the component gives. The tests share one applied demo and run in order: the images, the order of the topics
Job and the runtime, every pod Ready, the NetworkPolicies, Flink's metrics read by a `metrics` client and the
scrape configuration for Prometheus run on the live pods, poison records dead-lettered, then the generator stopped
as its manifest says and everything it sent checked by the product's verifier, run in the cluster from the greeter
image.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_render.manifests import CONTAINER_PROMETHEUS_PORT, K8S_STORAGE, K8S_VARIANTS
from stack.config import REPO_ROOT
from tests.e2e.kafka_io import produce, read
from tests.e2e.test_dead_letters import one_letter_per_poison_record, poison_corpus
from tests.support.prometheus import running_prometheus
from tests.support.waiting import wait_for

from .demo import DEPLOYMENTS, K8S, MASTER, VERIFY_IMAGE, WORKER, Demo, rfc3339
from .pod_discovery import pod_target_groups, with_file_discovery

pytestmark = pytest.mark.timeout(600)

GREETER_MIN_REPLICAS = 2  # base/greeter.yaml's HorizontalPodAutoscaler


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
    assert {name: image for name, (image, _) in in_manifests.items() if image not in demo.images_names} == {}
    assert {name: policy for name, (_, policy) in in_manifests.items() if policy not in (None, "IfNotPresent")} == {}
    ran = {
        f"{pod['metadata']['name']} {status['name']}": status["image"]
        for pod in demo.kubectl.json("pods")["items"]
        for status in pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    }
    assert ran, "no pod reported a container"
    assert {name: image for name, image in ran.items() if image not in demo.images_names} == {}


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


# Run in a probe pod from the greeter image: each target tried until it answers as expected or 30 s pass (a new
# pod's address reaches the policy controller's rules a moment after the pod starts); what each ended as, in JSON.
PROBE = """
import json, socket, sys, time
results = {}
for host, port, expected in json.loads(sys.argv[1]):
    port = int(port)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((host, port), timeout=3).close()
            opened = True
        except OSError:
            opened = False
        if opened == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    results[f"{host}:{port}"] = opened
print(json.dumps(results))
"""


def run_probe(demo: Demo, name: str, label: str | None, script: str, argument: str) -> str:
    """`python3 -c SCRIPT ARGUMENT` in a pod of the greeter image labelled `label` (key=value, or none): the last
    line it printed, once it finished."""
    argv = ["run", name, "--restart=Never", f"--image={VERIFY_IMAGE}", "--command"]
    if label:
        argv.insert(3, f"--labels={label}")
    demo.kubectl(*argv, "--", "python3", "-c", script, argument)

    def finished() -> bool:
        return str(demo.kubectl.json(f"pod/{name}")["status"]["phase"]) in ("Succeeded", "Failed")

    demo.kubectl.until(f"the probe pod {name} finished", finished, timeout=240)
    output = demo.kubectl("logs", name)
    demo.kubectl("delete", "pod", name, "--wait=false")
    return output.strip().splitlines()[-1]


def reachable(demo: Demo, name: str, label: str | None, targets: dict[str, bool]) -> dict[str, bool]:
    """From a pod labelled `label` (key=value, or none), which of `targets` (host:port -> expected to connect)
    a TCP connection reaches."""
    listed = [[*target.rsplit(":", 1), expected] for target, expected in targets.items()]
    results: dict[str, bool] = json.loads(run_probe(demo, name, label, PROBE, json.dumps(listed)))
    return results


def flink_reporters(demo: Demo) -> dict[str, str]:
    """The master's and each worker's Flink Prometheus reporter (pod address and port), by pod name."""
    pods = demo.kubectl.items("pods", MASTER) + demo.kubectl.items("pods", WORKER)
    return {pod["metadata"]["name"]: f"{pod['status']['podIP']}:{CONTAINER_PROMETHEUS_PORT}" for pod in pods}


def test_the_network_policies_admit_only_the_labelled_clients(demo: Demo) -> None:
    """base/network-policy.yaml enforced by the cluster's policy controller (kube-router, tests/k8s/cluster): the
    runtime is served (every other test here), a pod without a label reaches neither the greeter, nor Flink's REST
    API, nor Flink's metrics on the master and the worker pods, a pod labelled for one reaches that one only."""
    greeter, rest, rpc, kafka = "greeter:8000", "statefun-master:8081", "statefun-master:6123", "kafka:9092"
    metrics = {reporter: True for reporter in flink_reporters(demo).values()}
    closed = dict.fromkeys(metrics, False)
    cases = {
        "probe-unlabelled": (None, {greeter: False, rest: False, rpc: False, kafka: True, **closed}),
        "probe-flink-rest": ("statefun-greeter/access=flink-rest", {rest: True, rpc: False, greeter: False, **closed}),
        "probe-metrics": ("statefun-greeter/access=metrics", {greeter: True, rest: False, rpc: False, **metrics}),
    }
    seen = {name: reachable(demo, name, label, targets) for name, (label, targets) in cases.items()}
    print(f"[k8s manifests] reachable: {seen}")

    assert seen == {name: targets for name, (_label, targets) in cases.items()}


# Run in a pod labelled as a metrics client: each address's /metrics read, and the sum of each asked metric's
# samples (None when the exposition has none). Tried for up to 30 s, as PROBE does: a new pod's address reaches the
# policy controller's rules a moment after the pod starts.
SCRAPE = """
import json, sys, time, urllib.request
wanted = json.loads(sys.argv[1])
found = {}
for address, names in wanted.items():
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
                lines = response.read().decode().splitlines()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    sums = {}
    for line in lines:
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    found[address] = {name: sums.get(name) for name in names}
print(json.dumps(found))
"""
FUNCTION_IN = "flink_taskmanager_job_task_operator_functions_example_greeter_in"  # messages the function took
MASTER_METRICS = ["flink_jobmanager_numRegisteredTaskManagers", "flink_jobmanager_job_runningState"]
WORKER_METRICS = [FUNCTION_IN, "flink_taskmanager_job_task_operator_functions_example_greeter_outEgress"]


def test_a_metrics_client_reads_flinks_metrics_on_the_master_and_every_worker(demo: Demo) -> None:
    """Flink's Prometheus reporter (flink-conf's metrics.reporter.prom.*, the image's plugin) on port 9249 of each
    runtime pod, read as Prometheus reads it, from a pod with the `metrics` access label: the JobManager's gauges
    on the master, StateFun's counters of the greeter function on the worker, counting the generator's names."""
    reporters = flink_reporters(demo)
    masters = {reporters[pod["metadata"]["name"]] for pod in demo.kubectl.items("pods", MASTER)}
    wanted = {address: MASTER_METRICS if address in masters else WORKER_METRICS for address in reporters.values()}

    found = json.loads(run_probe(demo, "probe-scrape", "statefun-greeter/access=metrics", SCRAPE, json.dumps(wanted)))
    print(f"[k8s manifests] Flink's metrics: {found}")

    workers = len(reporters) - len(masters)
    for address in masters:
        assert found[address] == {"flink_jobmanager_numRegisteredTaskManagers": workers, MASTER_METRICS[1]: 1.0}
    for address in set(reporters.values()) - masters:
        assert (found[address][FUNCTION_IN] or 0) > 0, found[address]
        assert (found[address][WORKER_METRICS[1]] or 0) > 0, found[address]


SCRAPE_CONFIG = REPO_ROOT / "deploy" / "monitoring" / "prometheus" / "kubernetes.yml"
COMPONENT_JOBS = {"function": "greeter", "master": "flink-jobmanager", "worker": "flink-taskmanager"}


def test_the_prometheus_scrape_configuration_finds_each_pod_in_its_job_and_scrapes_it(
    demo: Demo, tmp_path: Path
) -> None:
    """deploy/monitoring/prometheus/kubernetes.yml's jobs and relabelling, run by a real Prometheus on this machine
    (the node, which the NetworkPolicies admit, as they admit the kubelet's probes) against every live pod of the
    cluster, as Kubernetes discovery would hand them to it (pod_discovery.py): each pod that serves metrics is one
    target of the job its component names, scraped and up; the others are no target; StateFun's function counter
    reaches it."""
    pods = demo.kubectl.json("pods", "--all-namespaces")["items"]
    discovered = tmp_path / "pods.json"
    discovered.write_text(json.dumps(pod_target_groups(pods)))
    config = with_file_discovery(yaml.safe_load(SCRAPE_CONFIG.read_text()), str(discovered), scrape_interval="1s")
    expected: dict[str, list[str]] = {}
    for pod in pods:
        component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if component in COMPONENT_JOBS and pod["status"]["phase"] == "Running":
            expected.setdefault(COMPONENT_JOBS[component], []).append(pod["metadata"]["name"])
    assert sorted(expected) == sorted(COMPONENT_JOBS.values()), expected

    started = time.monotonic()
    with running_prometheus(yaml.safe_dump(config), tmp_path / "prometheus") as prometheus:
        every_up = {job: ["up"] * len(names) for job, names in expected.items()}
        wait_for("every target up", lambda: prometheus.health_by_job() == every_up, 60, every=0.5)
        targets = prometheus.targets()
        wait_for("the function's counter", lambda: sum(s.value for s in prometheus.query(FUNCTION_IN)) > 0, 30)
    print(f"[k8s manifests] kubernetes.yml: every target up and scraped {time.monotonic() - started:.1f} s after start")

    scraped = {(t["labels"]["job"], t["labels"]["pod"], t["labels"]["namespace"], t["scrapeUrl"]) for t in targets}
    addresses = {pod["metadata"]["name"]: pod["status"]["podIP"] for pod in pods}
    ports = {
        "greeter": 8000,
        "flink-jobmanager": CONTAINER_PROMETHEUS_PORT,
        "flink-taskmanager": CONTAINER_PROMETHEUS_PORT,
    }
    assert scraped == {
        (job, name, "default", f"http://{addresses[name]}:{ports[job]}/metrics")
        for job, names in expected.items()
        for name in names
    }


def test_a_second_apply_changes_nothing(demo: Demo) -> None:
    """README, "Applying again": every object `unchanged` but the PodDisruptionBudget, which kubectl reports
    `configured` (policy/v1 replaces its selector on every patch) while the server changes nothing in it."""
    budget = demo.kubectl.json("pdb/greeter")["metadata"]["generation"]  # changes with the spec only

    report = demo.kubectl("apply", "-k", str(demo.folder))

    changed = [line for line in report.strip().splitlines() if not line.endswith(" unchanged")]
    assert changed == ["poddisruptionbudget.policy/greeter configured"], report
    assert demo.kubectl.json("pdb/greeter")["metadata"]["generation"] == budget


def test_poison_records_land_in_the_dead_letter_topic(demo: Demo) -> None:
    job = demo.running_job()
    failures = demo.rest().failure_count(job)
    poison = poison_corpus(uuid.uuid4().hex[:8])

    produce(demo.bootstrap, "names", [(key, value) for key, (value, _reason) in poison.items()])
    letters = read(demo.bootstrap, "names-dlq", set(poison), len(poison), deadline_s=120, settle_s=4)

    one_letter_per_poison_record(letters, poison)
    assert demo.running_job() == job
    assert demo.rest().failure_count(job) == failures, "the job failed while the poison records went through"


def test_the_generators_names_come_out_as_greetings_exactly_once(demo: Demo) -> None:
    generator = demo.kubectl.one("jobs", "app.kubernetes.io/name=generator")
    assert not generator["status"].get("succeeded"), "the generator finished: it runs 10 minutes"
    demo.stop_generators()

    greetings, names = demo.verify("verify")

    assert greetings >= 10 and names >= 1


def test_every_kustomization_is_accepted_by_the_api_server(demo: Demo) -> None:
    """What is not applied for real here (the other storage kustomizations, mtls, prod, registry, ha on its own,
    and the object store, whose S3 file system Flink cannot get on this machine) is at least what the API server
    accepts: `kubectl apply --dry-run=server` of each into a namespace of its own (the claim of another storage
    kustomization would be refused as a change to the bound one)."""
    namespace = "greeter-dry-run"
    demo.kubectl("create", "namespace", namespace)
    try:
        answers = {
            name: demo.kubectl("apply", "--dry-run=server", "-n", namespace, "-k", str(K8S / name))
            for name in (*K8S_STORAGE, *K8S_VARIANTS)
        }
    finally:
        demo.kubectl("delete", "namespace", namespace, "--wait=false")

    for name, answer in answers.items():
        lines = answer.strip().splitlines()
        assert lines and all(line.endswith("(server dry run)") for line in lines), f"{name}:\n{answer}"
