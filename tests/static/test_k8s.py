"""deploy/k8s, checked without a cluster: every kustomization renders (kubectl kustomize, or kustomize from
scripts/setup), every object validates against the Kubernetes 1.32 schemas in strict mode (kubernetes-validate,
from PyPI), and the manifests hold to the settings they share with the local and compose stacks."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from certs.tls import CertFiles
from deploy_render import manifests
from deploy_render.manifests import (
    K8S_COMPONENTS,
    K8S_DIR,
    K8S_STORAGE,
    K8S_VARIANTS,
    k8s_bootstrap_servers,
    render_k8s_flink_conf,
    render_k8s_module_yaml,
    rendered_files,
)
from greeter.config.settings import Settings, load_settings
from greeter.server.serve import gunicorn_options
from greeter.web.app import create_app
from stack.config import TOPICS, StackConfig
from tests.static.flink_paths import local_folders, not_absolute
from tests.static.quantity import canonical, quantity

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.32"
KUSTOMIZE = ROOT / ".tools" / "kustomize" / "bin" / "kustomize"  # scripts/setup installs it without kubectl
ENDPOINT = "io.statefun.endpoints.v2/http"
# StateFun 3.3.0's async transport recycles a pooled connection after pool_ttl (default 15 s) plus a random
# 1-3 s (NettyRequestReplySpec, HttpConnectionPoolHandler).
POOL_TTL_DEFAULT_S = 15
POOL_TTL_JITTER_MAX_S = 3
VARIANTS = sorted(K8S_VARIANTS)


def kustomize_command() -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    if KUSTOMIZE.is_file():
        return [str(KUSTOMIZE), "build"]
    pytest.fail("neither kubectl nor .tools/kustomize/bin/kustomize found: run scripts/setup")


def render_path(path: Path) -> tuple[dict[str, Any], ...]:
    command = [*kustomize_command(), str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def render(name: str) -> tuple[dict[str, Any], ...]:
    return render_path(K8S_DIR / name)


def objects(name: str, kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind by name; generated ConfigMaps and the Jobs (named after their pod template) under their
    name without the hash suffix."""
    found = {}
    for doc in render(name):
        if doc["kind"] == kind:
            key = doc["metadata"]["name"]
            if kind in ("ConfigMap", "Job"):
                key = re.sub(r"-[a-z0-9]{10}$", "", key)
            found[key] = doc
    return found


def pod_spec(name: str, deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = objects(name, "Deployment")[deployment]["spec"]["template"]["spec"]
    return spec


def container(name: str, deployment: str) -> dict[str, Any]:
    (only,) = pod_spec(name, deployment)["containers"]
    return dict(only)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def flink_conf(name: str) -> dict[str, str]:
    text = objects(name, "ConfigMap")["statefun-flink-conf"]["data"]["flink-conf.yaml"]
    return dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def dynamic_properties(name: str, deployment: str) -> dict[str, str]:
    """What statefun-runtime.sh passes to Flink as -Dkey=value: each `key: value` line of the container's
    FLINK_PROPERTIES and FLINK_PROPERTIES_<NAME> variables (a value, or a ConfigMap's key), in name order."""
    maps = objects(name, "ConfigMap")
    variables = {}
    for item in container(name, deployment).get("env", []):
        if "value" in item:
            variables[item["name"]] = item["value"]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            variables[item["name"]] = maps[re.sub(r"-[a-z0-9]{10}$", "", ref["name"])]["data"][ref["key"]]
    found = {}
    for variable in sorted(v for v in variables if re.fullmatch(r"FLINK_PROPERTIES(_[A-Z0-9_]+)?", v)):
        for line in variables[variable].splitlines():
            if line.strip() and not line.strip().startswith("#"):
                key, value = line.split(":", 1)
                found[key.strip()] = value.strip()
    return found


def runtime_conf(name: str, deployment: str) -> dict[str, str]:
    """The Flink configuration a runtime container runs with: flink-conf.yaml, overridden by dynamic properties."""
    return flink_conf(name) | dynamic_properties(name, deployment)


def env_source(name: str, deployment: str, variable: str) -> tuple[int, dict[str, Any]]:
    """A variable's position in the container's env list (Kubernetes expands $(NAME) only from earlier ones) and
    its valueFrom."""
    items = container(name, deployment)["env"]
    (index,) = [i for i, item in enumerate(items) if item["name"] == variable]
    return index, items[index].get("valueFrom", {})


def defined_before(name: str, deployment: str, variable: str, user: str) -> bool:
    return env_source(name, deployment, variable)[0] < env_source(name, deployment, user)[0]


def module(name: str) -> dict[str, dict[str, Any]]:
    text = objects(name, "ConfigMap")["statefun-module"]["data"]["module.yaml"]
    return {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(text)}


def mounts(name: str, deployment: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mountPath -> (the mount, its volume)."""
    volumes = {volume["name"]: volume for volume in pod_spec(name, deployment)["volumes"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container(name, deployment)["volumeMounts"]}


def generated_name(volume: dict[str, Any]) -> str:
    return re.sub(r"-[a-z0-9]{10}$", "", volume["configMap"]["name"])


def probe_path(probe: dict[str, Any]) -> tuple[str, int | str]:
    """The path and port a probe asks for: an httpGet, or an exec probe that opens https://127.0.0.1:PORT + argv[1]."""
    if "httpGet" in probe:
        return probe["httpGet"]["path"], probe["httpGet"]["port"]
    command = probe["exec"]["command"]
    match = re.search(r"https://127\.0\.0\.1:(\d+)\"\s*\+\s*sys\.argv\[1\]", command[2])
    assert match, command
    return command[3], int(match.group(1))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_every_kustomization_is_listed_in_stack_deploy() -> None:
    found = {str(path.parent.relative_to(K8S_DIR)) for path in K8S_DIR.rglob("kustomization.yaml")}
    assert found == set(K8S_VARIANTS) | set(K8S_STORAGE) | set(K8S_COMPONENTS)


@pytest.mark.parametrize("name", VARIANTS + list(K8S_STORAGE))
def test_renders_and_validates_against_the_kubernetes_schemas_strictly(name: str) -> None:
    kinds = set()
    for doc in render(name):
        kinds.add(doc["kind"])
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{where} against Kubernetes {KUBERNETES_VERSION}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{where}: {error.message}")
    if name in K8S_STORAGE:
        assert kinds == {"PersistentVolumeClaim"}
        return
    expected = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"}
    assert expected <= kinds
    # The checkpoints outlive `kubectl delete -k` of the stack: without them the job reads `names` from the start.
    assert "PersistentVolumeClaim" not in kinds


def test_the_committed_rendered_files_are_current() -> None:
    result = deploy_command("--check")
    assert result.returncode == 0, f"stale, run .venv/bin/python -m deploy_render:\n{result.stdout}{result.stderr}"
    assert result.stdout == ""


def deploy_command(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deploy_render", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def deploy_folder_state() -> dict[str, tuple[int, bytes]]:
    """Every file under deploy/ (where deploy_render writes), with its modification time and bytes."""
    return {
        str(path): (path.stat().st_mtime_ns, path.read_bytes())
        for path in (ROOT / "deploy").rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("flag", ["--help", "-h", "--check"])
def test_help_and_check_write_nothing(flag: str) -> None:
    before = deploy_folder_state()
    result = deploy_command(flag)
    assert deploy_folder_state() == before
    if flag == "--check":
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: python -m deploy_render")
        assert "--check" in result.stdout


def test_check_names_each_file_that_differs_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--check on a copy of the rendered files (the tracked ones are never touched): 0 while they match, 1 with
    one line per file once one is altered or missing."""
    for path, text in rendered_files().items():
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, encoding="utf-8")
    assert manifests.main(["--check"], root=tmp_path) == 0
    assert capsys.readouterr().out == ""

    altered = tmp_path / "deploy" / "k8s" / "base" / "flink-conf.yaml"
    altered.write_text(altered.read_text(encoding="utf-8") + "parallelism.default: 9\n", encoding="utf-8")
    missing = tmp_path / "deploy" / "compose" / "module.mtls.yaml"
    missing.unlink()
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert manifests.main(["--check"], root=tmp_path) == 1
    assert capsys.readouterr().out.splitlines() == [
        "deploy/compose/module.mtls.yaml",
        "deploy/k8s/base/flink-conf.yaml",
    ]
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before

    assert manifests.main([], root=tmp_path) == 0  # no argument: write them, as before
    assert manifests.main(["--check"], root=tmp_path) == 0


@pytest.mark.parametrize("name", VARIANTS)
def test_config_maps_hold_what_stack_deploy_renders(name: str) -> None:
    variant = K8S_VARIANTS[name]
    maps = objects(name, "ConfigMap")
    assert maps["statefun-flink-conf"]["data"] == {"flink-conf.yaml": render_k8s_flink_conf(variant)}
    assert maps["statefun-module"]["data"] == {"module.yaml": render_k8s_module_yaml(variant)}
    assert maps["statefun-runtime-script"]["data"] == {
        "statefun-runtime.sh": (ROOT / "deploy" / "compose" / "statefun-runtime.sh").read_text()
    }
    assert maps["greeter-kafka"]["data"] == {"GREETER_BOOTSTRAP_SERVERS": k8s_bootstrap_servers()}


@pytest.mark.parametrize("name", VARIANTS)
def test_flink_conf_keeps_the_shared_pipeline_settings(name: str) -> None:
    conf = flink_conf(name)
    config = K8S_VARIANTS[name].config
    assert conf["execution.checkpointing.interval"] == f"{StackConfig().checkpoint_interval_ms}ms"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    # Flink's defaults on a shared cluster, not the local stack's 1 s / 5 s, which fail the job on any 5 s stall.
    assert (conf["heartbeat.interval"], conf["heartbeat.timeout"]) == ("10000", "50000")
    assert conf["parallelism.default"] == str(config.parallelism)
    assert conf["state.checkpoints.dir"] == "file:///checkpoint-dir"


@pytest.mark.parametrize("name", VARIANTS)
def test_taskmanager_replicas_equal_the_parallelism(name: str) -> None:
    conf = flink_conf(name)
    workers = objects(name, "Deployment")["statefun-worker"]["spec"]["replicas"]
    assert workers * int(conf["taskmanager.numberOfTaskSlots"]) == int(conf["parallelism.default"])
    assert conf["taskmanager.numberOfTaskSlots"] == "1", "one subtask per worker pod"


@pytest.mark.parametrize("name", VARIANTS)
def test_flink_containers_get_the_memory_flink_conf_sizes_the_jvm_to(name: str) -> None:
    conf = flink_conf(name)
    for deployment, key in (("statefun-master", "jobmanager"), ("statefun-worker", "taskmanager")):
        size = conf[f"{key}.memory.process.size"]
        assert size.endswith("m"), size  # Flink's m: mebibytes
        resources = container(name, deployment)["resources"]
        limit, request = (quantity(resources[which]["memory"]) for which in ("limits", "requests"))
        assert limit == request == int(size[:-1]) * 2**20, deployment


@pytest.mark.parametrize("name", VARIANTS)
def test_master_is_one_pod_reached_through_its_service(name: str) -> None:
    conf = flink_conf(name)
    master = objects(name, "Deployment")["statefun-master"]["spec"]
    assert master["replicas"] == 1
    assert master["strategy"]["type"] == "Recreate", "two JobManagers would share the checkpoints"
    service = objects(name, "Service")["statefun-master"]
    ports = {port["port"] for port in service["spec"]["ports"]}
    assert {int(conf["jobmanager.rpc.port"]), int(conf["blob.server.port"]), 8081} <= ports
    master_ports = {p["name"]: p["containerPort"] for p in container(name, "statefun-master")["ports"]}
    assert master_ports["rpc"] == int(conf["jobmanager.rpc.port"])
    assert master_ports["blob"] == int(conf["blob.server.port"])
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= set(master_ports)
    assert service["spec"]["selector"].items() <= master["template"]["metadata"]["labels"].items()
    # The workers reach the master through its Service; with high availability they ask the leader ConfigMap, in
    # which the leading master has published its pod's IP.
    assert env(container(name, "statefun-worker"))["MASTER_HOST"] == service["metadata"]["name"]
    if runtime_conf(name, "statefun-master").get("high-availability") == "kubernetes":
        master_host = env_source(name, "statefun-master", "MASTER_HOST")[1]
        assert master_host["fieldRef"]["fieldPath"] == "status.podIP"
    else:
        assert env(container(name, "statefun-master"))["MASTER_HOST"] == service["metadata"]["name"]
    assert container(name, "statefun-worker")["livenessProbe"]["tcpSocket"]["port"] == "rpc"
    worker_ports = {p["name"]: p["containerPort"] for p in container(name, "statefun-worker")["ports"]}
    assert worker_ports["rpc"] == int(conf["taskmanager.rpc.port"])


@pytest.mark.parametrize("name", VARIANTS)
def test_master_liveness_is_flinks_rpc_probe(name: str) -> None:
    # As Flink's own Kubernetes manifests: a slow REST answer under load must not restart the master and its job.
    probe = container(name, "statefun-master")["livenessProbe"]
    assert probe["tcpSocket"]["port"] == "rpc"
    assert probe["periodSeconds"] == 60


@pytest.mark.parametrize("name", VARIANTS)
def test_every_pod_local_volume_is_bounded(name: str) -> None:
    # An emptyDir without a limit lets RocksDB or a log fill the node's disk; with one the pod is evicted.
    for deployment in objects(name, "Deployment"):
        for volume in pod_spec(name, deployment)["volumes"]:
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{deployment}: emptyDir {volume['name']} has no sizeLimit"


@pytest.mark.parametrize("name", VARIANTS)
def test_a_restarted_worker_container_comes_back_as_the_same_taskmanager(name: str) -> None:
    # Local recovery across a container restart (Flink's local-recovery manifests): the pod's name as resource id,
    # and the working directory, where the TaskManager records its slots, beside the local state on a volume
    # that outlives the container.
    conf = runtime_conf(name, "statefun-worker")
    assert conf["state.backend.local-recovery"] == "true"
    assert conf["taskmanager.resource-id"] == "$(POD_NAME)"
    assert env_source(name, "statefun-worker", "POD_NAME")[1]["fieldRef"]["fieldPath"] == "metadata.name"
    assert defined_before(name, "statefun-worker", "POD_NAME", "FLINK_PROPERTIES_WORKER")
    local = mounts(name, "statefun-worker")
    folders = local_folders(conf)
    for path in folders["process.taskmanager.working-dir"] + folders["taskmanager.state.local.root-dirs"]:
        (volume,) = [volume for mounted, (_, volume) in local.items() if path.startswith(mounted + "/")]
        assert volume["emptyDir"]["sizeLimit"], path


@pytest.mark.parametrize("name", VARIANTS)
def test_every_local_folder_is_an_absolute_path_as_flink_splits_it(name: str) -> None:
    # Read as Flink reads them (split on "," and ":"), not as URIs: `file:///local/state/recovery` made the
    # TaskManager create `file/localState_...` relative to its working directory, and it died.
    for deployment in ("statefun-master", "statefun-worker"):
        assert not_absolute(runtime_conf(name, deployment)) == [], deployment
    folders = local_folders(runtime_conf(name, "statefun-worker"))
    assert {"taskmanager.state.local.root-dirs", "state.backend.rocksdb.localdir"} <= set(folders)
    local = mounts(name, "statefun-worker")
    for key, paths in folders.items():
        for path in paths:
            bounded = [v for mounted, (_, v) in local.items() if path.startswith(mounted + "/") and "emptyDir" in v]
            assert bounded and bounded[0]["emptyDir"]["sizeLimit"], f"{key}: {path} is not on the bounded volume"


HIGH_AVAILABILITY = ["overlays/ha", "overlays/object-store"]


@pytest.mark.parametrize("name", VARIANTS)
def test_high_availability_is_on_where_the_overlay_says(name: str) -> None:
    for deployment in ("statefun-master", "statefun-worker"):
        mode = runtime_conf(name, deployment).get("high-availability")
        assert mode == ("kubernetes" if name in HIGH_AVAILABILITY else None), (name, deployment)


@pytest.mark.parametrize("name", HIGH_AVAILABILITY)
def test_high_availability_elects_one_master_with_the_rights_it_needs(name: str) -> None:
    accounts = {
        pod_spec(name, deployment).get("serviceAccountName") for deployment in ("statefun-master", "statefun-worker")
    }
    (account,) = accounts
    assert account in objects(name, "ServiceAccount")
    (binding,) = [
        b for b in objects(name, "RoleBinding").values() if {"kind": "ServiceAccount", "name": account} in b["subjects"]
    ]
    role = objects(name, "Role")[binding["roleRef"]["name"]]
    granted = {verb for rule in role["rules"] if "configmaps" in rule["resources"] for verb in rule["verbs"]}
    # The leader lock and the job's record are ConfigMaps that Flink creates, renews, watches and removes.
    assert {"get", "list", "watch", "create", "update", "delete"} <= granted
    confs = [runtime_conf(name, deployment) for deployment in ("statefun-master", "statefun-worker")]
    for conf in confs:
        # Flink's own client works in `default` unless told the pod's namespace.
        assert conf["kubernetes.namespace"] == "$(POD_NAMESPACE)"
        # The record sits beside the checkpoints it points to: the same volume or bucket.
        record, checkpoints = urlsplit(conf["high-availability.storageDir"]), urlsplit(conf["state.checkpoints.dir"])
        assert (record.scheme, record.netloc) == (checkpoints.scheme, checkpoints.netloc)
    assert confs[0]["kubernetes.cluster-id"] == confs[1]["kubernetes.cluster-id"]
    for deployment in ("statefun-master", "statefun-worker"):
        assert env_source(name, deployment, "POD_NAMESPACE")[1]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert defined_before(name, deployment, "POD_NAMESPACE", "FLINK_PROPERTIES_HA")


def test_the_object_store_overlay_keeps_all_state_in_the_bucket_with_keys_from_a_secret() -> None:
    name = "overlays/object-store"
    for deployment in ("statefun-master", "statefun-worker"):
        conf = runtime_conf(name, deployment)
        for key in ("state.checkpoints.dir", "state.savepoints.dir", "high-availability.storageDir"):
            assert urlsplit(conf[key]).scheme == "s3", (deployment, key)
        assert (conf["s3.access-key"], conf["s3.secret-key"]) == ("$(S3_ACCESS_KEY)", "$(S3_SECRET_KEY)")
        for variable, key in (("S3_ACCESS_KEY", "access-key"), ("S3_SECRET_KEY", "secret-key")):
            assert env_source(name, deployment, variable)[1]["secretKeyRef"] == {"name": "statefun-s3", "key": key}
            assert defined_before(name, deployment, variable, "FLINK_PROPERTIES_S3_KEYS")
        assert "/checkpoint-dir" not in mounts(name, deployment)
    assert "Secret" not in {doc["kind"] for doc in render(name)}, "the keys are the user's Secret, not the repository's"


@pytest.mark.parametrize(
    ("storage", "access", "storage_class"),
    [
        ("storage/shared", "ReadWriteMany", None),  # the cluster's default class, or set one
        ("storage/nfs", "ReadWriteMany", "nfs-client"),  # the NFS subdir external provisioner's class
        ("storage/single-node", "ReadWriteOnce", None),
    ],
)
def test_the_checkpoint_volume_is_the_claim_the_runtime_mounts(
    storage: str, access: str, storage_class: str | None
) -> None:
    # Several nodes need ReadWriteMany; a one-node development cluster's default class offers ReadWriteOnce,
    # which binds the volume to the node, so every runtime pod there may mount it.
    (claim,) = objects(storage, "PersistentVolumeClaim").values()
    assert claim["metadata"]["name"] == "statefun-checkpoints"
    assert claim["spec"]["accessModes"] == [access]
    assert claim["spec"].get("storageClassName") == storage_class
    for name in VARIANTS:
        for deployment in ("statefun-master", "statefun-worker"):
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in pod_spec(name, deployment)["volumes"]
                if "persistentVolumeClaim" in v
            ]
            on_the_volume = urlsplit(runtime_conf(name, deployment)["state.checkpoints.dir"]).scheme == "file"
            assert claims == (["statefun-checkpoints"] if on_the_volume else []), (name, deployment)


@pytest.mark.parametrize("name", VARIANTS)
def test_runtime_pods_mount_module_conf_script_and_shared_checkpoints(name: str) -> None:
    for deployment in ("statefun-master", "statefun-worker"):
        found = mounts(name, deployment)
        conf_mount, conf_volume = found["/opt/flink/conf/flink-conf.yaml"]
        assert conf_mount["subPath"] == "flink-conf.yaml" and generated_name(conf_volume) == "statefun-flink-conf"
        assert generated_name(found["/opt/statefun/modules/greeter"][1]) == "statefun-module"
        checkpoints = urlsplit(runtime_conf(name, deployment)["state.checkpoints.dir"])
        if checkpoints.scheme == "file":
            assert found[checkpoints.path][1]["persistentVolumeClaim"]["claimName"] == "statefun-checkpoints"
    for deployment in ("statefun-master", "statefun-worker"):  # the shared entry point: jemalloc, resume
        (script,) = [path for path in container(name, deployment)["command"] if path.endswith(".sh")]
        assert script == "/opt/greeter/statefun-runtime.sh", deployment
        assert generated_name(mounts(name, deployment)["/opt/greeter"][1]) == "statefun-runtime-script"


@pytest.mark.parametrize("name", VARIANTS)
def test_kafka_is_one_setting(name: str) -> None:
    bootstrap = objects(name, "ConfigMap")["greeter-kafka"]["data"]["GREETER_BOOTSTRAP_SERVERS"]
    docs = module(name)
    assert docs["io.statefun.kafka.v1/ingress"]["address"] == bootstrap
    assert docs["io.statefun.kafka.v1/egress"]["address"] == bootstrap
    for job in objects(name, "Job").values():
        (only,) = job["spec"]["template"]["spec"]["containers"]
        refs = [re.sub(r"-[a-z0-9]{10}$", "", ref["configMapRef"]["name"]) for ref in only.get("envFrom", [])]
        assert refs == ["greeter-kafka"], job["metadata"]["name"]


@pytest.mark.parametrize("name", VARIANTS)
def test_module_yaml_endpoint_reaches_the_greeter_service(name: str) -> None:
    url = urlsplit(module(name)[ENDPOINT]["urlPathTemplate"])
    service = objects(name, "Service")["greeter"]
    (port,) = service["spec"]["ports"]
    assert url.hostname == service["metadata"]["name"] and url.port == port["port"]
    greeter = container(name, "greeter")
    ports = {p["name"]: p["containerPort"] for p in greeter["ports"]}
    assert env(greeter)["GREETER_BIND"] == f"0.0.0.0:{ports[port['targetPort']]}"
    assert service["spec"]["selector"].items() <= (
        objects(name, "Deployment")["greeter"]["spec"]["template"]["metadata"]["labels"].items()
    )
    tls = "GREETER_TLS_CERT" in env(greeter)
    assert url.scheme == ("https" if tls else "http") and tls == K8S_VARIANTS[name].tls


@pytest.mark.parametrize("name", VARIANTS)
def test_probes_and_metrics_point_to_routes_the_app_serves(name: str) -> None:
    routes = {rule.rule for rule in create_app(Settings()).url_map.iter_rules()}
    greeter = container(name, "greeter")
    port = {p["name"]: p["containerPort"] for p in greeter["ports"]}["http"]
    for probe, expected in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        path, probe_port = probe_path(greeter[probe])
        assert path == expected and path in routes, (probe, path)
        assert probe_port in ("http", port), (probe, probe_port)
    annotations = objects(name, "Deployment")["greeter"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] in routes
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations.get("prometheus.io/scheme", "http") == ("https" if K8S_VARIANTS[name].tls else "http")


def gunicorn_setting(setting: str, environment: dict[str, str]) -> Any:
    """What greeter-serve sets in gunicorn under the container's environment (its TLS files aside)."""
    return gunicorn_options(load_settings({k: v for k, v in environment.items() if not k.startswith("GREETER_TLS_")}))[
        setting
    ]


@pytest.mark.parametrize("name", VARIANTS)
def test_grace_period_outlasts_the_drain_and_gunicorns_graceful_stop(name: str) -> None:
    greeter = container(name, "greeter")
    graceful = gunicorn_setting("graceful_timeout", env(greeter))
    command = greeter["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    sleep = int(command[1])
    transport = module(name)[ENDPOINT]["transport"]
    assert "pool_ttl" not in transport, "this test assumes StateFun's default pool_ttl"
    assert sleep >= POOL_TTL_DEFAULT_S + POOL_TTL_JITTER_MAX_S, "pooled connections must expire before SIGTERM"
    assert pod_spec(name, "greeter")["terminationGracePeriodSeconds"] > sleep + graceful


@pytest.mark.parametrize("name", VARIANTS)
def test_workers_follow_the_pods_cpu_not_the_nodes(name: str) -> None:
    greeter = container(name, "greeter")
    assert "GREETER_WORKERS" in env(greeter), "gunicorn's default is the node's CPU count"
    assert gunicorn_setting("workers", env(greeter)) >= 1
    assert gunicorn_setting("bind", env(greeter)) == [env(greeter)["GREETER_BIND"]]


@pytest.mark.parametrize("name", VARIANTS)
def test_greeter_has_a_disruption_budget_and_a_cpu_autoscaler(name: str) -> None:
    deployment = objects(name, "Deployment")["greeter"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = objects(name, "PodDisruptionBudget")["greeter"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    autoscaler = objects(name, "HorizontalPodAutoscaler")["greeter"]["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "greeter"}
    ((metric),) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(name, "greeter")["resources"]["requests"], "utilisation is relative to the request"
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count"


@pytest.mark.parametrize("name", [name for name in VARIANTS if name != "overlays/registry"])
def test_images_are_the_compose_stacks(name: str, compose: dict[str, Any]) -> None:
    # The compose file names the public images as defaults of variables (${KAFKA_IMAGE:-apache/kafka:3.9.1}).
    services = {
        service: {"image": re.sub(r"^\$\{\w+:-(.+)\}$", r"\1", spec["image"])}
        for service, spec in compose["services"].items()
    }
    images = {}
    for kind in ("Deployment", "Job"):
        for object_name, doc in objects(name, kind).items():
            (only,) = doc["spec"]["template"]["spec"]["containers"]
            images[object_name] = only["image"]
    assert images["statefun-master"] == images["statefun-worker"] == services["statefun-master"]["image"]
    assert services["statefun-worker"]["image"] == services["statefun-master"]["image"]
    assert images["greeter"] == services["greeter"]["image"]
    assert images["topics"] == services["topics"]["image"]
    if "generator" in images:
        assert images["generator"] == services["generator"]["image"]


def container_images(name: str) -> dict[str, str]:
    """Every container's image (init containers included), by object and container name."""
    found = {}
    for kind in ("Deployment", "Job"):
        for object_name, doc in objects(name, kind).items():
            spec = doc["spec"]["template"]["spec"]
            for each in spec.get("initContainers", []) + spec["containers"]:
                found[f"{object_name}/{each['name']}"] = each["image"]
    return found


def test_the_registry_component_moves_every_image_and_keeps_the_public_tags() -> None:
    base, moved = container_images("base"), container_images("overlays/registry")
    assert set(moved) == set(base)
    for where, image in moved.items():
        assert image.startswith("registry.example.com/greeter/"), where
        name, _, tag = base[where].rpartition(":")
        assert image.rsplit("/", 1)[1] == (
            "statefun-greeter:1.0.0" if name == "statefun-greeter" else f"{name.split('/')[-1]}:{tag}"
        )


def job_templates(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """Each Job's name and its pod template (as JSON)."""
    return {
        doc["metadata"]["name"]: json.dumps(doc["spec"]["template"], sort_keys=True)
        for doc in docs
        if doc["kind"] == "Job"
    }


def job_images(docs: tuple[dict[str, Any], ...]) -> set[str]:
    """The image names (without tags) the Jobs' containers run, init containers included."""
    return {
        each["image"].rsplit(":", 1)[0]
        for doc in docs
        if doc["kind"] == "Job"
        for each in doc["spec"]["template"]["spec"].get("initContainers", [])
        + doc["spec"]["template"]["spec"]["containers"]
    }


@pytest.mark.parametrize("name", VARIANTS)
def test_a_job_whose_pod_template_changes_is_a_new_job(name: str, tmp_path: Path) -> None:
    # A Job's pod template is immutable: `kubectl apply -k` failed with "spec.template: field is immutable" after
    # an image's tag changed (the README's own upgrade path through components/registry) while the finished Job
    # still existed (its 1 h TTL). Each Job is named after a hash of what its template holds, so a changed template
    # is a Job of another name, created beside the old one, and an unchanged one keeps its name.
    renders = {"as is": render(name)}
    retagged = tmp_path / "retagged"
    retagged.mkdir()
    images = [{"name": image, "newTag": "retagged"} for image in sorted(job_images(render(name)))]
    resource = os.path.relpath(K8S_DIR / name, retagged)  # kustomize refuses absolute paths
    (retagged / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [resource], "images": images}))
    renders["every image retagged"] = render_path(retagged)
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "deploy", edited / "deploy")
    k8s = edited / "deploy" / "k8s"
    for path, old, new in (
        (k8s / "base" / "topics-job.yaml", "cpu: 50m", "cpu: 60m"),
        (k8s / "overlays" / "demo" / "generator-job.yaml", "--rate=2", "--rate=3"),
    ):
        assert old in path.read_text(), path
        path.write_text(path.read_text().replace(old, new))
    renders["job files edited"] = render_path(k8s / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "broker" / "deploy")
    env_file = tmp_path / "broker" / "deploy" / "k8s" / "base" / "kafka.env"
    env_file.write_text(env_file.read_text().replace("=kafka:9092", "=kafka-2.example.com:9092"))
    renders["another broker"] = render_path(tmp_path / "broker" / "deploy" / "k8s" / name)
    seen: dict[str, tuple[str, str]] = {}
    for what, docs in renders.items():
        for job, template in job_templates(docs).items():
            first = seen.setdefault(job, (what, template))
            assert first[1] == template, f"Job {job}: one name, two pod templates ({first[0]}; {what})"
    # A new broker is a new topics Job too, which makes the topics there (kafka.env is among what names it).
    topics = {what: [job for job in job_templates(docs) if job.startswith("topics-")] for what, docs in renders.items()}
    assert topics["another broker"] != topics["as is"]
    # The same files render the same names: a re-apply changes nothing.
    assert job_templates(render_path(K8S_DIR / name)) == job_templates(render(name))


def assert_waits_for_every_topic(name: str, spec: dict[str, Any], topics: tuple[str, ...] = TOPICS) -> None:
    """The pod's one init container waits, with the topics Job's Kafka CLI and broker, until every topic of
    `topics` exists with its partitions."""
    (wait,) = spec["initContainers"]
    script = " ".join(wait["args"])
    (creator,) = objects(name, "Job")["topics"]["spec"]["template"]["spec"]["containers"]
    assert wait["image"] == creator["image"], "the Kafka CLI of the topics Job"
    assert re.search(r"for topic in ([\w -]+);", script).group(1).split() == list(topics)  # type: ignore[union-attr]
    assert f"PartitionCount:[[:space:]]+{StackConfig().partitions}(" in script
    assert wait["envFrom"] == creator["envFrom"], "the same broker as the topics Job"


@pytest.mark.parametrize("name", VARIANTS)
def test_the_runtime_waits_for_every_topic_with_its_partitions(name: str) -> None:
    assert_waits_for_every_topic(name, pod_spec(name, "statefun-master"))


def test_the_generator_waits_for_the_topics_and_retries_a_failed_pod() -> None:
    # Started beside the topics Job, the generator could write to `names` first: a broker that auto-creates topics
    # makes it with its default partitions, and the master then waits forever for 4. With backoffLimit 0 it lived
    # only on its Kafka client's own retries.
    # It writes only `names`, so it waits for that one (on a secured Kafka its principal may describe no other).
    job = objects("overlays/demo", "Job")["generator"]
    assert_waits_for_every_topic("overlays/demo", job["spec"]["template"]["spec"], (TOPICS[0],))
    assert job["spec"]["backoffLimit"] >= 2


# Pod Security's `restricted` profile (Kubernetes 1.32): the volume types it admits.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What keeps a pod spec out of a namespace that enforces the `restricted` profile."""
    found = []
    pod = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds - RESTRICTED_VOLUMES}")
    for each in spec.get("initContainers", []) + spec["containers"]:
        own = each.get("securityContext", {})
        effective = pod | own
        if effective.get("runAsNonRoot") is not True:
            found.append(f"{each['name']}: runAsNonRoot")
        if effective.get("runAsUser", 1) == 0:
            found.append(f"{each['name']}: runAsUser 0")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{each['name']}: allowPrivilegeEscalation")
        if "ALL" not in own.get("capabilities", {}).get("drop", []):
            found.append(f"{each['name']}: capabilities not dropped")
        if effective.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{each['name']}: seccompProfile")
    return found


@pytest.mark.parametrize("name", VARIANTS)
def test_every_pod_meets_the_restricted_pod_security_profile(name: str) -> None:
    for kind in ("Deployment", "Job"):
        for object_name, doc in objects(name, kind).items():
            assert restricted_violations(doc["spec"]["template"]["spec"]) == [], f"{kind} {object_name}"


@pytest.mark.parametrize("name", VARIANTS)
def test_the_runtime_runs_as_the_flink_images_user(name: str) -> None:
    for deployment in ("statefun-master", "statefun-worker"):
        pod = pod_spec(name, deployment)["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (9999, 9999, 9999), deployment


def template_labels(name: str, deployment: str) -> dict[str, str]:
    labels: dict[str, str] = objects(name, "Deployment")[deployment]["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("name", VARIANTS)
def test_only_the_runtime_and_named_clients_reach_the_greeter_flinks_rest_api_and_metrics(name: str) -> None:
    policies = {key: policy["spec"] for key, policy in objects(name, "NetworkPolicy").items()}
    for deployment in ("greeter", "statefun-master", "statefun-worker"):
        labels = template_labels(name, deployment)
        selecting = [spec for spec in policies.values() if spec["podSelector"]["matchLabels"].items() <= labels.items()]
        assert selecting and all("Ingress" in spec["policyTypes"] for spec in selecting), deployment
    for spec in policies.values():
        for rule in spec["ingress"]:
            assert rule.get("from"), "a rule without `from` admits every pod"
            for peer in rule["from"]:
                assert peer["podSelector"]["matchLabels"], "a peer without pod labels admits whole namespaces"
    # The greeter: the workers, which call it (not the master), and metrics clients, on its port only.
    (rule,) = policies["greeter"]["ingress"]
    runtime, metrics = (peer["podSelector"]["matchLabels"] for peer in rule["from"])
    assert runtime.items() <= template_labels(name, "statefun-worker").items()
    assert not runtime.items() <= template_labels(name, "statefun-master").items()
    assert metrics == {"statefun-greeter/access": "metrics"}
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert {p["name"] for p in container(name, "greeter")["ports"]} == {"http"}
    # Flink's REST API (cancel, stop, savepoint): the runtime's own pods, and named clients on that port only.
    own, clients, master_metrics = policies["statefun-master"]["ingress"]
    assert own["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "statefun"}}}]
    assert clients["from"][0]["podSelector"]["matchLabels"] == {"statefun-greeter/access": "flink-rest"}
    assert clients["ports"] == [{"port": "rest", "protocol": "TCP"}]
    # The workers: the runtime's own pods. Flink's Prometheus reporter on both: `metrics` clients, on its port only.
    own, worker_metrics = policies["statefun-worker"]["ingress"]
    assert own["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "statefun"}}}]
    for rule in (master_metrics, worker_metrics):
        assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": metrics}}]
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_topics_job_matches_the_local_stack() -> None:
    (job,) = objects("base", "Job").values()
    (only,) = job["spec"]["template"]["spec"]["containers"]
    script = " ".join(only["args"])
    config = StackConfig()
    assert re.search(r"for topic in ([\w -]+);", script).group(1).split() == list(TOPICS)  # type: ignore[union-attr]
    assert f"--partitions {config.partitions}" in script
    assert f"max.message.bytes={config.max_message_bytes}" in script


def test_generator_job_runs_the_compose_generator_bounded() -> None:
    job = objects("overlays/demo", "Job")["generator"]
    (only,) = job["spec"]["template"]["spec"]["containers"]
    compose_args = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["generator"]["command"]
    assert only["command"][0] == compose_args[0] == "greeter-generator"
    assert {"--unicode", "--rate=2", "--names=10"} <= set(only["command"])
    assert any(arg.startswith("--count=") for arg in only["command"]), "a Job must finish"
    assert "generator" not in {name for name in objects("base", "Job")}, "the base runs no generator"


@pytest.mark.parametrize("name", [name for name in VARIANTS if K8S_VARIANTS[name].tls])
def test_mtls_files_are_where_the_secrets_are_mounted(name: str) -> None:
    files = CertFiles(Path("/"))
    transport = module(name)[ENDPOINT]["transport"]
    for deployment in ("statefun-master", "statefun-worker"):
        found = mounts(name, deployment)
        for key, file in (
            ("trust_cacerts", files.ca),
            ("client_cert", files.client_cert),
            ("client_key", files.client_key),
        ):
            path = Path(urlsplit(transport[key]).path)
            _mount, volume = found[str(path.parent)]
            assert volume["secret"]["secretName"] == "statefun-tls" and path.name == file.name, (deployment, key)
    greeter = env(container(name, "greeter"))
    found = mounts(name, "greeter")
    for variable, file in (
        ("GREETER_TLS_CERT", files.server_cert),
        ("GREETER_TLS_KEY", files.server_key),
        ("GREETER_TLS_CA", files.ca),
    ):
        path = Path(greeter[variable])
        _mount, volume = found[str(path.parent)]
        assert volume["secret"]["secretName"] == "greeter-tls" and path.name == file.name, variable


def container_requests(each: dict[str, Any]) -> dict[str, Fraction]:
    requests = each.get("resources", {}).get("requests", {})
    return {resource: quantity(requests.get(resource, 0)) for resource in ("cpu", "memory")}


def pod_requests(spec: dict[str, Any]) -> dict[str, Fraction]:
    """A pod's effective request, as the scheduler counts it: per resource, the larger of its largest init
    container's and the sum of its containers'."""
    init = [container_requests(each) for each in spec.get("initContainers", [])]
    app = [container_requests(each) for each in spec["containers"]]
    return {
        resource: max(max((c[resource] for c in init), default=Fraction(0)), sum(c[resource] for c in app))
        for resource in ("cpu", "memory")
    }


def requested(name: str) -> dict[str, Fraction]:
    """What a kustomization asks the scheduler for with everything it starts running: each Deployment at its
    autoscaler's minReplicas (or its replicas), each Job at its parallelism."""
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"].get("minReplicas", 1)
        for hpa in objects(name, "HorizontalPodAutoscaler").values()
        if hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }
    total = {"cpu": Fraction(0), "memory": Fraction(0)}
    pods = [(autoscaled.get(n, d["spec"].get("replicas", 1)), d) for n, d in objects(name, "Deployment").items()]
    pods += [(job["spec"].get("parallelism", 1), job) for job in objects(name, "Job").values()]
    for count, owner in pods:
        for resource, amount in pod_requests(owner["spec"]["template"]["spec"]).items():
            total[resource] += count * amount
    return total


def documented_capacity() -> dict[str, tuple[Fraction, Fraction]]:
    """deploy/k8s/README.md's "What each needs" table: kustomization -> (CPUs, MiB)."""
    text = (K8S_DIR / "README.md").read_text()
    section = text.split("### What each needs", 1)[1].split("\n#", 1)[0]
    found = {}
    for names, cpu, memory in re.findall(r"^\| ((?:`[\w/-]+`(?:, )?)+) \| ([\d.]+) \| ([\d,]+) MiB \|", section, re.M):
        for each in re.findall(r"`([\w/-]+)`", names):
            found[each] = (Fraction(cpu), Fraction(memory.replace(",", "")))
    return found


def test_the_readme_states_what_each_kustomization_requests() -> None:
    documented = documented_capacity()
    assert set(documented) == set(VARIANTS)
    for name in VARIANTS:
        total = requested(name)
        assert (total["cpu"], total["memory"] / 2**20) == documented[name], name


@pytest.mark.parametrize("name", VARIANTS)
def test_every_container_requests_cpu_and_memory(name: str) -> None:
    for kind in ("Deployment", "Job"):
        for object_name, doc in objects(name, kind).items():
            spec = doc["spec"]["template"]["spec"]
            for each in spec.get("initContainers", []) + spec["containers"]:
                assert {"cpu", "memory"} <= set(each["resources"]["requests"]), f"{object_name}/{each['name']}"


def test_the_demo_fits_a_two_cpu_node_beside_kafka() -> None:
    # kind and minikube default to the host's or 2 CPUs, and their control plane pods request 0.75-0.95 CPU of
    # them: the stack asked for 3.6 CPUs, and its worker stayed Pending. Kafka in a test needs room beside it.
    total = requested("overlays/demo")
    assert total["cpu"] <= Fraction("1.2"), float(total["cpu"])
    assert total["memory"] <= 3 * 2**30, float(total["memory"] / 2**30)


def rollout_bounds(deployment: dict[str, Any], replicas: int) -> tuple[int, int] | None:
    """(maxSurge, maxUnavailable) as the Deployment controller resolves them for `replicas` pods (percentages:
    surge rounded up, unavailable down; Kubernetes' 25 % defaults; both 0 makes unavailable 1); None for Recreate."""
    strategy = deployment["spec"].get("strategy", {})
    if strategy.get("type") == "Recreate":
        return None
    rolling = strategy.get("rollingUpdate", {})

    def resolve(value: int | str, round_up: bool) -> int:
        if isinstance(value, int):
            return value
        share = Fraction(int(value.rstrip("%")), 100) * replicas
        return -(-share.numerator // share.denominator) if round_up else share.numerator // share.denominator

    surge = resolve(rolling.get("maxSurge", "25%"), round_up=True)
    unavailable = resolve(rolling.get("maxUnavailable", "25%"), round_up=False)
    return surge, (1 if surge == unavailable == 0 else unavailable)


def deployment_replicas(name: str) -> dict[str, int]:
    """Each Deployment's pod count at rest: the autoscaler's minReplicas where one targets it."""
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"].get("minReplicas", 1)
        for hpa in objects(name, "HorizontalPodAutoscaler").values()
    }
    return {n: autoscaled.get(n, d["spec"].get("replicas", 1)) for n, d in objects(name, "Deployment").items()}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_rollout_progresses_on_a_full_node_and_the_greeter_keeps_serving(name: str) -> None:
    # On a one-node cluster with no room left, a rollout that must first start a new pod waits for it forever
    # (Pending), and an old pod that crash-loops is never replaced. Each Deployment either stops old pods first
    # (Recreate) or may take one down before its replacement is ready.
    deployments = objects(name, "Deployment")
    for deployment_name, replicas in deployment_replicas(name).items():
        bounds = rollout_bounds(deployments[deployment_name], replicas)
        assert bounds is None or bounds[1] >= 1, f"{deployment_name}: {bounds} waits for room"
    # The runtime: every worker replaced restarts the whole job from its checkpoint, so all at once (one restart),
    # never a new TaskManager beside the old ones; the master never has two JobManagers.
    assert rollout_bounds(deployments["statefun-worker"], deployment_replicas(name)["statefun-worker"]) is None
    assert rollout_bounds(deployments["statefun-master"], 1) is None
    # The greeter serves throughout: at least one ready pod at every step, and a new one may start beside them.
    replicas = deployment_replicas(name)["greeter"]
    bounds = rollout_bounds(deployments["greeter"], replicas)
    assert bounds is not None and replicas - bounds[1] >= 1 and bounds[0] >= 1, bounds


OVERVIEWS = Path(__file__).with_name("data") / "jobs-overview"
READY_OVERVIEWS = {"running-all-tasks", "canceled-then-running"}


def run_probe(command: list[str], overview: Path | None, tmp_path: Path) -> tuple[int, list[str]]:
    """Run an exec probe with a `wget` on PATH that answers `overview` (or fails, for None); returns the exit
    status and the arguments wget was called with."""
    fake = tmp_path / "bin" / "wget"
    fake.parent.mkdir(exist_ok=True)
    calls = tmp_path / "wget-args"
    answer = f"cat {overview}" if overview else "exit 4"  # wget's exit status for a network failure
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {calls}\n{answer}\n')
    fake.chmod(0o755)
    environment = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("name", VARIANTS)
def test_the_master_is_ready_only_while_the_job_runs_all_its_tasks(name: str, tmp_path: Path) -> None:
    # A master without any worker answered /overview, and /jobs/overview said RUNNING, with every task SCHEDULED
    # and 153 checkpoints failed. Ready means the job's tasks all run.
    master = container(name, "statefun-master")
    command = master["readinessProbe"]["exec"]["command"]
    rest = {p["name"]: p["containerPort"] for p in master["ports"]}["rest"]
    samples = sorted(OVERVIEWS.glob("*.json"))
    assert {sample.stem for sample in samples} >= READY_OVERVIEWS | {"running-tasks-scheduled"}
    for sample in samples:
        status, wget_args = run_probe(command, sample, tmp_path)
        assert (status == 0) == (sample.stem in READY_OVERVIEWS), sample.stem
        assert f"http://127.0.0.1:{rest}/jobs/overview" in wget_args
    assert run_probe(command, None, tmp_path)[0] != 0, "the REST API unreachable"
    # Not ready while the job is not running is no reason to cut the workers off: they register through the
    # master's Service, so it lists the master whether or not it is ready.
    service = objects(name, "Service")["statefun-master"]["spec"]
    assert service.get("publishNotReadyAddresses") is True


STACK_LABEL = ("app.kubernetes.io/part-of", "statefun-greeter")


@pytest.mark.parametrize("name", VARIANTS + list(K8S_STORAGE))
def test_every_object_carries_the_stacks_label(name: str) -> None:
    # The README's cleanup of the ConfigMaps that earlier applies left behind selects them by this label: one
    # generated in an overlay or a component must carry it too.
    for doc in render(name):
        labels = doc["metadata"].get("labels", {})
        assert labels.get(STACK_LABEL[0]) == STACK_LABEL[1], f"{doc['kind']}/{doc['metadata']['name']}"


def quantities(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every resource quantity in an object: requests, limits (containers, claims) and emptyDir size limits."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("requests", "limits") and isinstance(value, dict):
                found += [(f"{path}.{key}.{resource}", amount) for resource, amount in value.items()]
            elif key == "sizeLimit":
                found.append((f"{path}.{key}", value))
            else:
                found += quantities(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += quantities(value, f"{path}[{index}]")
    return found


@pytest.mark.parametrize(
    ("written", "stored"),
    # What the API server gives back (kubernetes/kubernetes#116135: `cpu: "1.2"` and `"1000m"` re-applied as
    # `configured` every time, `"1200m"` and `"1"` not).
    [("1.2", "1200m"), ("1000m", "1"), ("1", "1"), ("150m", "150m"), ("0.5", "500m"), ("1024Mi", "1Gi"),
     ("768Mi", "768Mi"), ("1536Mi", "1536Mi"), ("4Gi", "4Gi"), ("2000", "2k"), ("512", "512"), ("0", "0")],
)  # fmt: skip
def test_quantities_as_the_api_server_stores_them(written: str, stored: str) -> None:
    assert canonical(written) == stored
    assert quantity(written) == quantity(stored)


@pytest.mark.parametrize("name", VARIANTS + list(K8S_STORAGE))
def test_a_second_apply_of_the_same_files_leaves_every_object_unchanged(name: str) -> None:
    # kubectl's three-way patch compares the files with what the server returns: a value the server writes in
    # another form, or defaults inside a list that the patch replaces whole, is a change on every apply.
    for doc in render(name):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for path, value in quantities(doc):
            assert str(value) == canonical(value), f"{where}{path}: {value!r} comes back as {canonical(value)!r}"
        if doc["kind"] == "NetworkPolicy":
            # `ingress` is replaced whole by a patch, and the server gives each port `protocol: TCP` when none is set.
            for rule in doc["spec"].get("ingress", []) + doc["spec"].get("egress", []):
                for port in rule.get("ports", []):
                    assert "protocol" in port, f"{where}: port {port} without its protocol"
    if any(doc["kind"] == "PodDisruptionBudget" for doc in render(name)):
        # The one exception, which no file can avoid: policy/v1 declares a budget's `selector` with patchStrategy
        # "replace", so kubectl's three-way patch always carries it (apimachinery's strategicpatch handleMapDiff),
        # changed or not. The README says so.
        assert "poddisruptionbudget.policy/greeter configured" in (K8S_DIR / "README.md").read_text()


SASL = "overlays/kafka-sasl"


def sasl_demo(tmp_path: Path) -> tuple[dict[str, Any], ...]:
    """A user's kustomization: the demo with components/kafka-sasl (kustomize wants relative paths)."""
    folder = tmp_path / "demo-sasl"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        "resources:\n"
        f"  - {os.path.relpath(K8S_DIR / 'overlays' / 'demo', folder)}\n"
        "components:\n"
        f"  - {os.path.relpath(K8S_DIR / manifests.KAFKA_SASL_COMPONENT, folder)}\n"
    )
    return render_path(folder)


def pod_mounts(spec: dict[str, Any], each: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """A container's mount folders -> their volumes."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    return {Path(m["mountPath"]): volumes[m["name"]] for m in each.get("volumeMounts", [])}


def secret_of(mounted: dict[Path, dict[str, Any]], path: Path) -> str:
    volume = mounted[path.parent]
    assert "secret" in volume, f"{path}: not from a Secret"
    return str(volume["secret"]["secretName"])


def assert_ca_mounted(mounted: dict[Path, dict[str, Any]]) -> None:
    volume = mounted[manifests.KAFKA_CA_FILE.parent]
    assert volume["configMap"] == {"name": "greeter-kafka-ca", "optional": True}


def test_kafka_sasl_module_yaml_carries_the_security_properties_and_no_secret() -> None:
    from clitools.kafka_security import SECRET_KEYS

    expected = manifests.k8s_kafka_security()
    assert expected["security.protocol"] == "SASL_SSL" and expected["sasl.mechanism"] == "SCRAM-SHA-512"
    docs = module(SASL)
    for kind in ("io.statefun.kafka.v1/ingress", "io.statefun.kafka.v1/egress"):
        properties = {key: str(value) for item in docs[kind].get("properties", []) for key, value in item.items()}
        assert expected.items() <= properties.items(), kind
        assert not set(properties) & SECRET_KEYS, kind
    for name in VARIANTS:
        if not K8S_VARIANTS[name].kafka_sasl:
            assert "properties" not in module(name)["io.statefun.kafka.v1/ingress"], name
    # Nothing rendered holds a login: the ConfigMaps carry no JAAS line, no password.
    for doc in render(SASL):
        text = json.dumps(doc)
        assert "LoginModule" not in text and "password=" not in text and "sasl.jaas.config" not in text
        assert doc["kind"] != "Secret", "the Secrets are the user's"


def test_kafka_sasl_settings_are_checked_when_rendered(tmp_path: Path) -> None:
    settings = tmp_path / "kafka-security.properties"
    settings.write_text("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n")
    assert manifests.k8s_kafka_security(settings) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    for wrong in ("sasl.mechanism=AWS_MSK_IAM\n", "ssl.ca.location=/elsewhere/ca.pem\n", "sasl.password=x\n"):
        settings.write_text(wrong)
        with pytest.raises(manifests.RenderError):
            manifests.k8s_kafka_security(settings)


def test_kafka_sasl_runtime_login_in_flink_conf_is_the_mounted_runtime_secret() -> None:
    conf = runtime_conf(SASL, "statefun-worker")
    option = conf["env.java.opts.taskmanager"]
    match = re.fullmatch(r"-Djava\.security\.auth\.login\.config=(\S+)", option)
    assert match, option
    jaas = Path(match[1])
    worker = pod_spec(SASL, "statefun-worker")
    mounted = pod_mounts(worker, container(SASL, "statefun-worker"))
    assert secret_of(mounted, jaas) == "greeter-kafka-runtime" and jaas.name == "client.jaas"
    truststore = module(SASL)["io.statefun.kafka.v1/egress"]["properties"]
    location = Path(next(item["ssl.truststore.location"] for item in truststore if "ssl.truststore.location" in item))
    assert location == manifests.KAFKA_CA_FILE
    assert_ca_mounted(mounted)
    # The master runs no Kafka client: no login in its JVM, its container mounts none (its init container does).
    assert "env.java.opts.jobmanager" not in runtime_conf(SASL, "statefun-master")
    assert manifests.KAFKA_LOGIN_DIR not in pod_mounts(
        pod_spec(SASL, "statefun-master"), container(SASL, "statefun-master")
    )
    for name in VARIANTS:
        if not K8S_VARIANTS[name].kafka_sasl:
            assert "env.java.opts.taskmanager" not in flink_conf(name), name


def assert_kafka_cli_login(spec: dict[str, Any], each: dict[str, Any], principal: str) -> None:
    """A Kafka CLI container: --command-config the mounted Java settings, KAFKA_OPTS the principal's JAAS file."""
    variables = env(each)
    mounted = pod_mounts(spec, each)
    assert '${GREETER_KAFKA_COMMAND_CONFIG:+--command-config "$GREETER_KAFKA_COMMAND_CONFIG"}' in " ".join(each["args"])
    config = Path(variables["GREETER_KAFKA_COMMAND_CONFIG"])
    assert mounted[config.parent]["configMap"]["name"].startswith("greeter-kafka-cli-")
    assert config.name == manifests.KAFKA_CLI_PROPERTIES
    jaas = Path(variables["KAFKA_OPTS"].removeprefix("-Djava.security.auth.login.config="))
    assert secret_of(mounted, jaas) == f"greeter-kafka-{principal}" and jaas == manifests.KAFKA_JAAS
    assert_ca_mounted(mounted)
    # The Kafka CLI runs as its image's user: the Secret's files readable through the pod's fsGroup.
    assert spec["securityContext"]["fsGroup"] and mounted[jaas.parent]["secret"]["defaultMode"] == 0o440


def test_kafka_sasl_every_client_logs_in_as_its_own_principal_from_its_secret(tmp_path: Path) -> None:
    from clitools.kafka_args import CLIENT_CONFIG_ENV

    docs = sasl_demo(tmp_path)
    jobs = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d for d in docs if d["kind"] == "Job"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    topics = jobs["topics"]["spec"]["template"]["spec"]
    assert_kafka_cli_login(topics, topics["containers"][0], "topics")
    master = deployments["statefun-master"]["spec"]["template"]["spec"]
    assert_kafka_cli_login(master, master["initContainers"][0], "runtime")
    generator = jobs["generator"]["spec"]["template"]["spec"]
    assert_kafka_cli_login(generator, generator["initContainers"][0], "generator")
    (producer,) = generator["containers"]
    client_config = Path(env(producer)[CLIENT_CONFIG_ENV])
    mounted = pod_mounts(generator, producer)
    assert secret_of(mounted, client_config) == "greeter-kafka-generator"
    assert client_config == manifests.KAFKA_CLIENT_CONFIG
    assert_ca_mounted(mounted)
    # The generator waits only for the topic it writes: its principal may describe no other.
    assert re.search(r"for topic in ([\w -]+);", generator["initContainers"][0]["args"][0])[1] == "names"  # type: ignore[index]
    # No pod mounts another principal's Secret.
    secrets = {
        f"{d['kind']}/{d['metadata']['name']}": {
            v["secret"]["secretName"] for v in d["spec"]["template"]["spec"].get("volumes", []) if "secret" in v
        }
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }
    assert {k: v for k, v in secrets.items() if v} == {
        "Deployment/statefun-master": {"greeter-kafka-runtime"},
        "Deployment/statefun-worker": {"greeter-kafka-runtime"},
        f"Job/{jobs['topics']['metadata']['name']}": {"greeter-kafka-topics"},
        f"Job/{jobs['generator']['metadata']['name']}": {"greeter-kafka-generator"},
    }


def test_kafka_sasl_renames_the_topics_job_it_changes() -> None:
    # The topics Job's pod template differs from the base's: the same name would be an immutable-field error.
    assert objects(SASL, "Job")["topics"]["metadata"]["name"] != objects("base", "Job")["topics"]["metadata"]["name"]
