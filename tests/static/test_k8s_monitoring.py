"""deploy/k8s for Prometheus, checked without a cluster: every pod that serves metrics names its port and carries the
conventional prometheus.io annotations, the NetworkPolicies admit the `metrics` access label there
(test_k8s.py), and deploy/monitoring/prometheus/kubernetes.yml finds each of those pods in exactly one job by its
labels. Debian's Prometheus 2.42 (the one here) is built without Kubernetes discovery, so promtool cannot load that
file: tests/k8s/test_manifests.py runs its relabelling in a real Prometheus against the live pods."""

import re
from typing import Any

import pytest
import yaml

from deploy_render.manifests import K8S_VARIANTS
from greeter.config.settings import Settings
from greeter.web.app import create_app
from stack.flinkconf import REPORTER_PREFIX

from .test_k8s import ROOT, VARIANTS, container, flink_conf, objects, template_labels

SCRAPE_CONFIG = ROOT / "deploy" / "monitoring" / "prometheus" / "kubernetes.yml"
JOBS = {"greeter": "greeter", "flink-jobmanager": "statefun-master", "flink-taskmanager": "statefun-worker"}
RUNTIME = ("statefun-master", "statefun-worker")


def annotations(name: str, deployment: str) -> dict[str, str]:
    found: dict[str, str] = objects(name, "Deployment")[deployment]["spec"]["template"]["metadata"].get(
        "annotations", {}
    )
    return found


def meta_label(prefix: str, key: str) -> str:
    """How Kubernetes discovery names a pod's label or annotation: every character not allowed in a label name
    becomes `_` (app.kubernetes.io/name -> __meta_kubernetes_pod_label_app_kubernetes_io_name)."""
    return f"__meta_kubernetes_pod_{prefix}_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def discovered(name: str, deployment: str) -> dict[str, str]:
    """The meta labels Kubernetes discovery gives a running pod of `deployment` (its labels and annotations)."""
    labels = {meta_label("label", key): value for key, value in template_labels(name, deployment).items()}
    notes = {meta_label("annotation", key): value for key, value in annotations(name, deployment).items()}
    return {**labels, **notes, "__meta_kubernetes_pod_phase": "Running"}


def kept_by(job: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether the job's `keep` rules keep a target with these labels (Prometheus joins the source labels' values
    with `;`, an absent label being empty, and matches the whole string)."""
    for rule in job["relabel_configs"]:
        if rule.get("action") == "keep":
            value = rule.get("separator", ";").join(labels.get(label, "") for label in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
    return True


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


@pytest.mark.parametrize("name", VARIANTS)
def test_flinks_reporter_is_a_named_port_with_scrape_annotations_on_master_and_workers(name: str) -> None:
    port = int(flink_conf(name)[f"{REPORTER_PREFIX}.port"])
    for deployment in RUNTIME:
        ports = {p["name"]: p["containerPort"] for p in container(name, deployment)["ports"]}
        assert ports["metrics"] == port, deployment
        # Plain HTTP in every overlay (mutual TLS covers the greeter's endpoint only): no prometheus.io/scheme.
        assert annotations(name, deployment) == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, deployment


@pytest.mark.parametrize("name", VARIANTS)
def test_each_pod_that_serves_metrics_is_in_exactly_one_job(name: str, jobs: dict[str, dict[str, Any]]) -> None:
    assert set(jobs) == set(JOBS)
    assert all(job["kubernetes_sd_configs"] == [{"role": "pod"}] for job in jobs.values())
    for deployment in objects(name, "Deployment"):
        labels = discovered(name, deployment)
        keeping = [job for job_name, job in jobs.items() if kept_by(job, labels)]
        expected = [jobs[job] for job, target in JOBS.items() if target == deployment]
        assert keeping == expected, (deployment, [job["job_name"] for job in keeping])
    # A pod without the annotation is left alone even with the right labels (kept by no job).
    unannotated = {key: value for key, value in discovered(name, "greeter").items() if "annotation" not in key}
    assert not kept_by(jobs["greeter"], unannotated)


def test_the_scrape_interval_is_the_one_the_dashboards_datasource_assumes() -> None:
    # Grafana's $__rate_interval spans at least four of the datasource's timeInterval: scraped less often, the
    # dashboard's rates come out empty.
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    datasources = ROOT / "deploy" / "monitoring" / "grafana" / "provisioning" / "datasources"
    intervals = {
        source["jsonData"]["timeInterval"]
        for path in sorted(datasources.glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    }
    assert intervals == {config["global"]["scrape_interval"]}


def test_the_greeters_scheme_and_path_come_from_its_annotations(jobs: dict[str, dict[str, Any]]) -> None:
    """With overlays/mtls the greeter serves /metrics over HTTPS only: the job takes the scheme from the pod."""
    rules = {rule.get("target_label"): rule for rule in jobs["greeter"]["relabel_configs"]}
    assert rules["__scheme__"]["source_labels"] == [meta_label("annotation", "prometheus.io/scheme")]
    assert rules["__metrics_path__"]["source_labels"] == [meta_label("annotation", "prometheus.io/path")]
    tls = [name for name in VARIANTS if K8S_VARIANTS[name].tls]
    assert tls and all(annotations(name, "greeter")["prometheus.io/scheme"] == "https" for name in tls)
    assert "/metrics" in {rule.rule for rule in create_app(Settings()).url_map.iter_rules()}
