"""docker-compose.yml's `monitoring` profile, checked without a Docker engine: off by default, Prometheus's
configuration scraping each service where it serves its metrics and loading the mounted alert rules (promtool,
Prometheus 2.42 as the compose tests run it), Grafana holding no secret and reading its provisioning where it is
mounted. That Prometheus scrapes the running stack: tests/compose/test_compose_stack.py."""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_render.manifests import render_compose_flink_conf
from greeter.config.settings import Settings
from greeter.web.app import create_app
from stack.flinkconf import REPORTER_PREFIX
from tests.support.prometheus import PROMTOOL

from .compose_files import ROOT, assert_read_only_bind_of, mounts

PROFILE = "monitoring"
MONITORING = ("prometheus", "grafana")
PROMETHEUS_CONFIG = "./deploy/monitoring/prometheus/compose.yml"
ALERTS = "./deploy/monitoring/alerts.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / PROMETHEUS_CONFIG).read_text())
    return document


def flags(service: dict[str, Any]) -> dict[str, str]:
    return dict(argument.removeprefix("--").split("=", 1) for argument in service["command"])


def test_the_monitoring_services_start_only_with_their_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {name: service["profiles"] for name, service in services.items() if "profiles" in service} == {
        name: [PROFILE] for name in MONITORING
    }
    # A service of the default stack that depended on one of them would start it without the profile.
    needing = {name: set(service.get("depends_on", {})) & set(MONITORING) for name, service in services.items()}
    assert {name: needed for name, needed in needing.items() if needed and name not in MONITORING} == {}


def test_prometheus_scrapes_the_greeter_the_master_and_every_worker_where_they_serve(
    compose: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert set(jobs) == {"greeter", "flink-jobmanager", "flink-taskmanager"}
    greeter_port = compose["services"]["greeter"]["environment"]["GREETER_BIND"].rsplit(":", 1)[1]
    conf = dict(
        line.split(": ", 1) for line in render_compose_flink_conf().splitlines() if line and not line.startswith("#")
    )
    reporter_port = int(conf[f"{REPORTER_PREFIX}.port"])
    assert jobs["greeter"]["static_configs"] == [{"targets": [f"greeter:{greeter_port}"]}]
    assert jobs["flink-jobmanager"]["static_configs"] == [{"targets": [f"statefun-master:{reporter_port}"]}]
    # Every worker container, however many `--scale` runs: the service name's A records.
    (workers,) = jobs["flink-taskmanager"]["dns_sd_configs"]
    assert (workers["names"], workers["type"], workers["port"]) == (["statefun-worker"], "A", reporter_port)
    assert {"greeter", "statefun-master", "statefun-worker"} <= set(compose["services"])
    # Prometheus's default path, which Flink's reporter serves and the greeter's app routes.
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())
    assert "/metrics" in {rule.rule for rule in create_app(Settings()).url_map.iter_rules()}


def test_prometheus_reads_the_mounted_configuration_and_alert_rules(
    compose: dict[str, Any], prometheus_config: dict[str, Any], tmp_path: Path
) -> None:
    service = compose["services"]["prometheus"]
    mounted = mounts(service)
    options = flags(service)
    assert_read_only_bind_of(mounted[options["config.file"]], PROMETHEUS_CONFIG)
    assert mounted[options["storage.tsdb.path"]] == "prometheus-data:/prometheus"  # kept across `down`
    in_container = {volume["target"]: volume["source"] for volume in mounted.values() if isinstance(volume, dict)}
    (rules,) = prometheus_config["rule_files"]
    assert in_container[rules] == ALERTS
    assert_read_only_bind_of(mounted[rules], ALERTS)
    # promtool reads the configuration with the rule files where they are on this machine: both valid.
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({**prometheus_config, "rule_files": [str(ROOT / in_container[rules])]}))
    checked = subprocess.run([str(PROMTOOL), "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {config} is valid prometheus config file syntax" in checked.stdout, checked.stdout


def test_grafana_holds_no_secret_and_lets_visitors_only_look(compose: dict[str, Any]) -> None:
    environment = compose["services"]["grafana"]["environment"]
    assert [key for key in environment if any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"))] == []
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # No login at all: no admin is created, and neither the form nor basic auth takes a password.
    assert environment["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"] == "true"
    assert environment["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert environment["GF_AUTH_BASIC_ENABLED"] == "false"


def test_grafana_reads_its_provisioning_and_dashboards_where_they_are_mounted(
    compose: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    mounted = mounts(compose["services"]["grafana"])
    # Grafana's default provisioning folder: datasources/ and dashboards/ beneath it.
    assert_read_only_bind_of(mounted["/etc/grafana/provisioning"], "./deploy/monitoring/grafana/provisioning")
    provisioning = ROOT / "deploy" / "monitoring" / "grafana" / "provisioning"
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers, "no dashboard provider in provisioning/dashboards"
    for provider in providers:
        assert_read_only_bind_of(mounted[provider["options"]["path"]], "./deploy/monitoring/grafana/dashboards")
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert {(source["type"], source["url"]) for source in datasources} == {("prometheus", "http://prometheus:9090")}
    # The dashboard's rates span at least four scrapes of the interval the datasource names: the profile's.
    assert {source["jsonData"]["timeInterval"] for source in datasources} == {
        prometheus_config["global"]["scrape_interval"]
    }
