"""What tests/compose's stand-in for apache/flink-statefun:3.3.0 is built from (tests/compose/images.py: the jars
of stack/jvm/lib/flink, which `greeter-stack fetch` resolves and scripts/setup runs, and its Dockerfile) holds what
the Kubernetes manifests use inside the runtime's image, read without building it."""

import re
import zipfile
from pathlib import Path

from deploy_render.manifests import render_compose_flink_conf
from stack.config import REPO_ROOT, StackConfig
from stack.fetch import is_fresh
from stack.flinkconf import REPORTER_PREFIX
from stack.metrics_plugin import PLUGIN_NAME, REPORTER_JAR
from tests.compose.images import LIB, STANDIN_SOURCES

# What `high-availability: kubernetes` (components/high-availability) makes Flink 1.16 load by name: inside
# flink-dist in the official image; from org.apache.flink:flink-kubernetes in a runtime assembled from Maven.
KUBERNETES_HA_FACTORY = "org/apache/flink/kubernetes/highavailability/KubernetesHaServicesFactory.class"


def jar_entries(folder: Path) -> dict[str, str]:
    """Every entry of every jar in `folder` (its zip listing), with the jar that holds it."""
    found: dict[str, str] = {}
    for jar in sorted(folder.glob("*.jar")):
        with zipfile.ZipFile(jar) as archive:
            found.update(dict.fromkeys(archive.namelist(), jar.name))
    return found


def test_the_standins_jars_carry_flinks_kubernetes_high_availability() -> None:
    # Without it the HA overlay's master died with ClassNotFoundException: KubernetesHaServicesFactory.
    config = StackConfig()
    assert config.jvm_dir / "lib" == LIB, "the stand-in is built from the local stack's jars"
    assert is_fresh(config.jvm_dir), "stack/jvm/lib is missing or older than stack/jvm's poms: run greeter-stack fetch"
    entries = jar_entries(LIB / "flink")
    assert KUBERNETES_HA_FACTORY in entries, "add org.apache.flink:flink-kubernetes to stack/jvm/flink/pom.xml"
    assert re.fullmatch(r"flink-kubernetes-[\d.]+\.jar", entries[KUBERNETES_HA_FACTORY])


def test_the_standin_has_the_tools_the_manifests_run_in_the_runtimes_image() -> None:
    # The master's readiness probe runs bash and wget (base/statefun-master.yaml); statefun-runtime.sh preloads
    # jemalloc. bash comes with the Debian base (Essential), the rest from the Dockerfile's apt-get install.
    dockerfile = (STANDIN_SOURCES / "flink-statefun" / "Dockerfile").read_text()
    install = re.search(r"apt-get install ([^&]+)&&", dockerfile.replace("\\\n", " "))
    assert install, dockerfile
    packages = set(install.group(1).split())
    assert {"wget", "libjemalloc2"} <= packages, packages
    master = (REPO_ROOT / "deploy" / "k8s" / "base" / "statefun-master.yaml").read_text()
    assert "/bin/bash" in master and "wget -qO-" in master


def test_the_standin_carries_the_prometheus_reporter_plugin_the_container_flink_conf_names() -> None:
    # deploy/compose/flink-conf.yaml (and Kubernetes') name Flink's own factory, which the public image has in
    # plugins/metrics-prometheus/; without the plugin Flink logs the failure and runs on without metrics.
    conf = dict(
        line.split(": ", 1) for line in render_compose_flink_conf().splitlines() if line and not line.startswith("#")
    )
    factory = conf[f"{REPORTER_PREFIX}.factory.class"]
    with zipfile.ZipFile(LIB / "plugins" / PLUGIN_NAME / REPORTER_JAR) as jar:
        assert factory.replace(".", "/") + ".class" in jar.namelist()
        services = jar.read("META-INF/services/org.apache.flink.metrics.reporter.MetricReporterFactory").decode()
    assert factory in services.split()
    standin = STANDIN_SOURCES / "flink-statefun"
    assert "COPY plugins/ /opt/flink/plugins/\n" in (standin / "Dockerfile").read_text()
    # Flink reads its plugins folder from this variable (its scripts export it); unset, from ./plugins.
    assert (
        "export FLINK_PLUGINS_DIR=${FLINK_PLUGINS_DIR:-$FLINK_HOME/plugins}\n" in (standin / "flink-jvm.sh").read_text()
    )
