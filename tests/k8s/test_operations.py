"""The demo of test_manifests.py operated as deploy/k8s/README.md and docs/operations.md tell a user, under load, on
the real cluster: a worker pod force-deleted, the greeter rolled, the user's kustomization applied again with a new
greeter tag, the parallelism changed by the documented steps, the master restarted again and again (its checkpoint
folder stays bounded), Flink's Kubernetes high availability switched on and its master killed, and `kubectl delete
-k`. After each, the product's verifier, run in the cluster, finds every name greeted exactly once under
read_committed. The tests share the demo and run in order; each prints what it measured (`[k8s operations]`), and
all of it is written to run/tests/k8s/operations.json.

The load is greeter-generator on this machine, through the port-forward to Kafka: 40 records/s over 300 names, until
stopped (SIGTERM flushes, and its report must say every record was delivered).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import procs
from stack.rest import FlinkRest, RestError

from .conftest import RUN
from .demo import MASTER, VERIFY_IMAGE, WORKER, Demo
from .stack_images import REGISTRY

pytestmark = pytest.mark.timeout(900)

RATE = 40  # records/s
NAMES = 300
RETRY = re.compile(r"Retry #\d+")  # StateFun's HTTP client, once per failed delivery it tries again
PART_OF = "app.kubernetes.io/part-of=statefun-greeter"  # every object of the stack
MEASURED: dict[str, dict[str, float]] = {}


def record(test: str, **figures: float) -> None:
    MEASURED[test] = {name: round(value, 1) for name, value in figures.items()}
    print(f"[k8s operations] {test}: {json.dumps(MEASURED[test])}")
    (RUN / "operations.json").write_text(json.dumps(MEASURED, indent=2) + "\n")


class Load:
    """greeter-generator at RATE records/s into `names` through the port-forward, started and stopped by its PID."""

    def __init__(self, demo: Demo, label: str, seed: int) -> None:
        self.log = RUN / f"load-{label}.log"
        self.log.unlink(missing_ok=True)
        argv = [
            str(Path(sys.executable).parent / "greeter-generator"),
            f"--bootstrap-servers={demo.bootstrap}",
            f"--rate={RATE}",
            f"--names={NAMES}",
            f"--seed={seed}",
            "--unicode",
        ]
        self.proc = procs.spawn(f"load-{label}", argv, self.log)

    def stop(self) -> int:
        """Stop it (SIGTERM: it flushes); the records it delivered, AssertionError unless all were."""
        procs.stop(self.proc, timeout=60)
        report = self.log.read_text()
        totals = re.search(r"generator: sent (\d+), delivered (\d+), failed (\d+), undelivered (\d+)", report)
        assert totals, report[-2000:]
        sent, delivered, failed, undelivered = map(int, totals.groups())
        assert (failed, undelivered) == (0, 0) and delivered == sent > 0, report[-2000:]
        return delivered


@pytest.fixture
def load(demo: Demo, request: pytest.FixtureRequest) -> Iterator[Callable[[], Load]]:
    """Starts the load once the test asks, the demo's generator stopped first; stops it at the end if the test did
    not."""
    started: list[Load] = []

    def start() -> Load:
        demo.stop_generators()  # the test's load is all that arrives (every apply starts the demo's generator again)
        started.append(Load(demo, request.node.name.removeprefix("test_")[:40], seed=len(MEASURED) + 1))
        return started[-1]

    yield start
    for running in started:
        procs.stop(running.proc, timeout=60)


def tasks_running(rest: FlinkRest) -> str | None:
    """The one job's id while it is RUNNING with every task running, else None."""
    jobs = [job for job in rest.get("/jobs/overview")["jobs"] if job["state"] not in ("CANCELED", "FINISHED")]
    if len(jobs) == 1 and jobs[0]["state"] == "RUNNING":
        tasks = jobs[0]["tasks"]
        if tasks["running"] == tasks["total"]:
            return str(jobs[0]["jid"])
    return None


def wait_running(demo: Demo, what: str, timeout: float = 300) -> tuple[str, float]:
    """Until the job runs all its tasks (the master may be restarting meanwhile): its id and the seconds it took."""
    started = time.monotonic()
    job: list[str] = []

    def running() -> bool:
        try:
            found = tasks_running(demo.rest(deadline_s=timeout))
        except RestError:
            return False
        job[:] = [found] if found else []
        return bool(found)

    demo.kubectl.until(what, running, timeout)
    return job[0], time.monotonic() - started


def checkpoint_after(demo: Demo, job: str, checkpoint_id: int, timeout: float = 180) -> tuple[int, float]:
    """Until `job` completes a checkpoint with an id above `checkpoint_id`: that id and the seconds it took."""
    started = time.monotonic()
    latest: list[int] = []

    def completed() -> bool:
        try:
            checkpoint = demo.rest(deadline_s=timeout).latest_checkpoint(job)
        except RestError:
            return False
        latest[:] = [checkpoint.id] if checkpoint else []
        return bool(checkpoint and checkpoint.id > checkpoint_id)

    demo.kubectl.until(f"a checkpoint of {job} after {checkpoint_id}", completed, timeout)
    return latest[0], time.monotonic() - started


def latest_checkpoint_id(demo: Demo, job: str) -> int:
    checkpoint = demo.rest().latest_checkpoint(job)
    return checkpoint.id if checkpoint else 0


def flowing(demo: Demo) -> tuple[str, int]:
    """The load is through the pipeline: two checkpoints completed since now. The job and its latest checkpoint."""
    job, _ = wait_running(demo, "the job running all its tasks")
    checkpoint, _ = checkpoint_after(demo, job, latest_checkpoint_id(demo, job) + 1)
    return job, checkpoint


def delivery_retries(demo: Demo) -> int:
    """`Retry #` lines in the workers' logs: deliveries to the greeter that failed and were tried again."""
    pods = [pod["metadata"]["name"] for pod in demo.kubectl.items("pods", WORKER)]
    return sum(len(RETRY.findall(demo.kubectl("logs", pod, timeout=60))) for pod in pods)


def restored_from(demo: Demo, job: str) -> str:
    """Where the job's tasks were restored from: the restored checkpoint's or savepoint's path ("" if none)."""
    restored = demo.rest().get(f"/jobs/{job}/checkpoints").get("latest", {}).get("restored") or {}
    return str(restored.get("external_path", ""))


def verified(demo: Demo, name: str, load: Load) -> dict[str, float]:
    """Load stopped, the demo's generator too, and the verifier run: the figures to record."""
    delivered = load.stop()
    demo.stop_generators()
    greetings, names = demo.verify(name)
    assert greetings >= delivered
    return {"records_sent_under_load": delivered, "greetings_verified": greetings, "names_verified": names}


def test_a_worker_pod_force_deleted_under_load_recovers_exactly(demo: Demo, load: Callable[[], Load]) -> None:
    running = load()
    job, checkpoint = flowing(demo)
    failures = demo.rest().failure_count(job)
    (worker,) = demo.kubectl.items("pods", WORKER)
    old = worker["metadata"]["name"]

    deleted = time.monotonic()
    demo.kubectl("delete", "pod", old, "--grace-period=0", "--force")
    demo.kubectl.until("the job failing over", lambda: demo.rest().failure_count(job) > failures, 180)
    failed_over = time.monotonic() - deleted
    again, _ = wait_running(demo, "the job running again on the new worker")
    running_again = time.monotonic() - deleted
    checkpoint_after(demo, job, checkpoint)
    checkpointed = time.monotonic() - deleted
    (new,) = demo.kubectl.items("pods", WORKER)

    assert again == job, "the job recovered in place (the master did not restart it as a new job)"
    assert new["metadata"]["name"] != old
    assert restored_from(demo, job), "the job restored its state from a checkpoint"
    figures = verified(demo, "verify-worker-deleted", running)
    record(
        "worker_pod_force_deleted",
        failover_detected_s=failed_over,
        running_again_s=running_again,
        next_checkpoint_s=checkpointed,
        **figures,
    )


def test_a_greeter_rolling_restart_under_load_fails_no_delivery(demo: Demo, load: Callable[[], Load]) -> None:
    running = load()
    job, checkpoint = flowing(demo)
    failures = demo.rest().failure_count(job)
    retries = delivery_retries(demo)
    before = {pod["metadata"]["name"] for pod in demo.kubectl.items("pods", "app.kubernetes.io/name=greeter")}

    started = time.monotonic()
    demo.kubectl("rollout", "restart", "deployment/greeter")
    rolled = demo.kubectl.waits("rollout", "status", "deployment/greeter", timeout=300)

    def greeters() -> set[str]:
        return {pod["metadata"]["name"] for pod in demo.kubectl.items("pods", "app.kubernetes.io/name=greeter")}

    demo.kubectl.until(
        "the old greeter pods gone (their preStop sleep, then a graceful stop)", lambda: not greeters() & before, 180
    )
    checkpoint_after(demo, job, checkpoint)  # and a commit after the last old pod went
    after = greeters()

    assert before and after and not before & after, f"every greeter pod replaced: {before} -> {after}"
    assert delivery_retries(demo) == retries, "a delivery to the greeter failed during the rollout"
    assert demo.rest().failure_count(job) == failures, "the job failed during the rollout"
    figures = verified(demo, "verify-greeter-rolled", running)
    record("greeter_rollout_restart", rollout_s=rolled, until_checkpoint_s=time.monotonic() - started, **figures)


def test_applied_again_with_a_new_greeter_tag(demo: Demo, load: Callable[[], Load]) -> None:
    """The README's upgrade path: a new tag in the registry component, `kubectl apply -k` again. The generator Job,
    which runs the greeter image, comes back under a new name instead of failing with `field is immutable`; the
    topics Job (the Kafka image) keeps its name; the greeter rolls to the new image; the runtime stays."""
    new_tag = "local-2"
    new_image = f"{REGISTRY}/statefun-greeter:{new_tag}"
    demo.kubectl.cluster.ctr("images", "tag", "--force", VERIFY_IMAGE, new_image)
    running = load()
    job, _ = flowing(demo)
    failures = demo.rest().failure_count(job)
    (topics,) = demo.kubectl.items("jobs", "app.kubernetes.io/name=topics")
    generator_before = demo.kubectl("kustomize", str(demo.folder))

    report = demo.apply(dataclasses.replace(demo.settings, greeter_tag=new_tag))
    demo.kubectl.waits("rollout", "status", "deployment/greeter", timeout=300)
    (generator,) = demo.kubectl.items("jobs", "app.kubernetes.io/name=generator")
    # The pods' spec, not their status: containerd reports an image by any of its names, and both tags name one.
    images = {
        container["image"]
        for pod in demo.kubectl.items("pods", "app.kubernetes.io/name=greeter")
        if "deletionTimestamp" not in pod["metadata"]
        for container in pod["spec"]["containers"]
    }

    generator_name = generator["metadata"]["name"]
    assert f"job.batch/{generator_name} created" in report, report
    assert f"name: {generator_name}\n" not in generator_before, "the generator Job has a new name"
    assert f"job.batch/{topics['metadata']['name']} unchanged" in report, report
    assert "deployment.apps/statefun-master unchanged" in report, report
    assert images == {new_image}
    assert generator["spec"]["template"]["spec"]["containers"][0]["image"] == new_image
    assert wait_running(demo, "the job running")[0] == job, "the runtime was not restarted"
    assert demo.rest().failure_count(job) == failures

    # The README's clean-up while the stack runs: ConfigMaps the files no longer render (the old generator's) go.
    pruned = demo.kubectl(
        "apply", "-k", str(demo.folder), "--prune", "-l", PART_OF,
        "--prune-allowlist=core/v1/ConfigMap",
    )  # fmt: skip
    rendered = config_maps(demo.kubectl("kustomize", str(demo.folder)))
    assert config_maps(generator_before) - rendered, "the new tag renders another generator ConfigMap"
    for old in config_maps(generator_before) - rendered:
        assert f"configmap/{old} pruned" in pruned, pruned
    assert {c["metadata"]["name"] for c in demo.kubectl.items("configmaps", PART_OF)} == rendered
    record("applied_with_new_greeter_tag", **verified(demo, "verify-new-tag", running))


def test_parallelism_changed_as_the_operations_guide_says(demo: Demo, load: Callable[[], Load]) -> None:
    """docs/operations.md, "Changing Flink's parallelism", without high availability: (1) the new value rendered
    with the workers' replicas, (2) the job cancelled with a savepoint into /checkpoint-dir/savepoints, (3) the
    kustomization applied: the new flink-conf.yaml reaches the replaced pods, the job resumes at parallelism 2."""
    running = load()
    job, _ = flowing(demo)
    assert demo.rest().parallelism(job)[0] == 1

    started = time.monotonic()
    trigger = demo.rest().trigger_savepoint(job, "file:///checkpoint-dir/savepoints", cancel=True)
    savepoint: list[str] = []

    def completed() -> bool:
        try:
            location = demo.rest(deadline_s=5).savepoint_status(job, trigger)
        except (RestError, AssertionError):
            # The master exits with its cancelled job (application mode), maybe before its status is read: the
            # savepoint is then in the folder, where its restarted entry point finds it too.
            found = demo.kubectl(
                "exec", "deploy/statefun-worker", "--", "sh", "-c",
                f"ls -d /checkpoint-dir/savepoints/savepoint-{job[:6]}-*/_metadata || true",
            ).split()  # fmt: skip
            location = found[0].removesuffix("/_metadata") if found else None
        savepoint[:] = [location] if location else []
        return bool(location)

    demo.kubectl.until("the savepoint", completed, 180)
    report = demo.apply(dataclasses.replace(demo.settings, parallelism=2))
    demo.kubectl.waits("rollout", "status", "deployment/statefun-worker", timeout=300)
    demo.kubectl.waits("rollout", "status", "deployment/statefun-master", timeout=300)
    resumed, _ = wait_running(demo, "the job running at the new parallelism")
    resumed_in = time.monotonic() - started
    conf = demo.kubectl("exec", "deploy/statefun-master", "--", "cat", "/opt/flink/conf/flink-conf.yaml")

    assert re.search(r"configmap/statefun-flink-conf-\w+ created", report), report
    assert re.search(r"^parallelism\.default: 2$", conf, re.MULTILINE), "the new flink-conf.yaml reached the master"
    assert resumed != job
    assert demo.rest().parallelism(resumed)[0] == 2
    assert len(demo.rest().taskmanagers()) == 2
    assert len(demo.kubectl.items("pods", WORKER)) == 2
    source = restored_from(demo, resumed)
    assert source, "the job at parallelism 2 restored its state"
    print(f"[k8s operations] savepoint {savepoint[0]}; the job at parallelism 2 restored from {source}")
    record("parallelism_1_to_2", savepoint_to_running_at_2_s=resumed_in, **verified(demo, "verify-rescaled", running))


def test_checkpoint_storage_stays_bounded_across_master_restarts(demo: Demo, load: Callable[[], Load]) -> None:
    running = load()
    flowing(demo)
    jobs, restarts = [], []
    for restart in range(3):
        (master,) = demo.kubectl.items("pods", MASTER)
        demo.kubectl("delete", "pod", master["metadata"]["name"], "--wait=true", timeout=180)
        job, seconds = wait_running(demo, f"the job after master restart {restart + 1}")
        jobs.append(job)
        restarts.append(seconds)
        checkpoint_after(demo, job, latest_checkpoint_id(demo, job))
    listing = demo.kubectl("exec", "deploy/statefun-master", "--", "sh", "-c", "cd /checkpoint-dir && ls -d */*/")
    size = demo.kubectl("exec", "deploy/statefun-master", "--", "du", "-sm", "/checkpoint-dir")
    folders = listing.split()
    job_folders = {folder.split("/")[0] for folder in folders if re.fullmatch(r"[0-9a-f]{32}", folder.split("/")[0])}
    retained = [folder for folder in folders if re.fullmatch(rf"{jobs[-1]}/chk-\d+/", folder)]
    print(f"[k8s operations] /checkpoint-dir after 3 master restarts: {folders}, {size.split()[0]} MB")

    assert len(set(jobs)) == 3, "each master start is a new job (no high availability)"
    # The entry point keeps the folder of the job it resumed from (until the next start) and removes the others.
    assert jobs[-1] in job_folders and job_folders <= set(jobs[-2:]), f"job folders {job_folders}, jobs {jobs}"
    assert 1 <= len(retained) <= 3, "state.checkpoints.num-retained: 3"
    record(
        "master_restarted_3_times",
        checkpoint_dir_mb=float(size.split()[0]),
        slowest_restart_to_running_s=max(restarts),
        **verified(demo, "verify-master-restarts", running),
    )


def test_high_availability_master_failover(demo: Demo, load: Callable[[], Load]) -> None:
    """components/high-availability included in the user's kustomization: the master and workers are replaced and
    the job is recorded; then the master pod is force-deleted under load: a new master takes the leader lock and
    recovers the same job from its record, from its latest checkpoint."""
    demo.apply(dataclasses.replace(demo.settings, high_availability=True))
    demo.kubectl.waits("rollout", "status", "deployment/statefun-master", timeout=300)
    demo.kubectl.waits("rollout", "status", "deployment/statefun-worker", timeout=300)
    running = load()
    job, checkpoint = flowing(demo)
    leader = demo.kubectl("get", "configmaps", "-l", "configmap-type=high-availability", "-o", "name")
    assert leader.strip(), "Flink wrote its high-availability ConfigMaps"
    (master,) = demo.kubectl.items("pods", MASTER)

    deleted = time.monotonic()
    demo.kubectl("delete", "pod", master["metadata"]["name"], "--grace-period=0", "--force")
    recovered, _ = wait_running(demo, "the job recovered by the new master")
    running_again = time.monotonic() - deleted
    checkpoint_after(demo, recovered, checkpoint)
    checkpointed = time.monotonic() - deleted
    restored = demo.rest().get(f"/jobs/{recovered}/checkpoints")["latest"].get("restored") or {}

    assert recovered == job, "the new master recovered the same job from the record"
    assert int(restored.get("id", -1)) >= checkpoint, f"restored from {restored}, not its latest checkpoint"
    record(
        "ha_master_force_deleted",
        running_again_s=running_again,
        next_checkpoint_s=checkpointed,
        **verified(demo, "verify-ha-failover", running),
    )


def test_delete_leaves_what_the_readme_says(demo: Demo) -> None:
    """`kubectl delete -k` deletes what the files render now. Left behind, as the README says: the checkpoint claim
    (its own kustomization), the ConfigMaps and Jobs earlier applies made (hashed names: here the flink-conf.yaml of
    parallelism 1; the old generator's ConfigMap was pruned, the generator Jobs were stopped), and Flink's
    high-availability ConfigMaps; the README's clean-up command then removes the stack's ConfigMaps and Jobs only."""
    demo.kubectl.save_logs(RUN / "logs-before-delete")
    rendered = {
        f"{doc['kind']}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(demo.kubectl("kustomize", str(demo.folder)))
        if doc
    }
    # As the README says it: the demo's generator Job, stopped by the tests before, is not there any more.
    demo.kubectl("delete", "-k", str(demo.folder), "--ignore-not-found", "--wait=true", timeout=300)
    demo.kubectl.until("the stack's pods gone", lambda: not demo.kubectl.json("pods")["items"], 180)

    left = labelled(demo, PART_OF)
    high_availability = labelled(demo, "configmap-type=high-availability")
    assert not rendered & left, "delete -k deleted everything the files render"
    assert {name.split("/")[0] for name in left} <= {"ConfigMap", "Job", "PersistentVolumeClaim"}, left
    assert "PersistentVolumeClaim/statefun-checkpoints" in left
    assert any(name.startswith("ConfigMap/statefun-flink-conf-") for name in left), "earlier flink-conf ConfigMaps"
    assert high_availability, "Flink's high-availability ConfigMaps stay"

    demo.kubectl("delete", "configmap,job", "-l", PART_OF)
    assert labelled(demo, PART_OF) == {"PersistentVolumeClaim/statefun-checkpoints"}
    assert labelled(demo, "configmap-type=high-availability") == high_availability
    record("deleted", objects_left_by_delete=len(left))


def config_maps(rendered: str) -> set[str]:
    """The ConfigMaps' names in `kubectl kustomize` output."""
    return {doc["metadata"]["name"] for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap"}


def labelled(demo: Demo, selector: str) -> set[str]:
    kinds = "deployments,replicasets,pods,services,configmaps,jobs,pvc,networkpolicies,pdb,hpa,serviceaccounts,roles"
    items: list[dict[str, Any]] = demo.kubectl.json(kinds + ",rolebindings", "-l", selector)["items"]
    return {f"{item['kind']}/{item['metadata']['name']}" for item in items}
