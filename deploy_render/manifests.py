"""Renders the container stacks' runtime configuration from the same settings as the local stack.

`python -m deploy_render` rewrites deploy/compose/flink-conf.yaml, deploy/compose/log4j-console.properties (the
local stack's Flink logging), deploy/compose/module.mtls.yaml (what docker-compose.mtls.yml mounts) and the
Kubernetes files that kustomize turns into ConfigMaps (deploy/k8s/*/flink-conf.yaml, deploy/k8s/*/module.yaml);
`python -m deploy_render --check` writes nothing and exits 1 naming each file that differs from what it renders,
which tests/static runs, so the stacks cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certs.tls import CertFiles
from clitools.kafka_args import BOOTSTRAP_ENV
from clitools.kafka_security import KafkaSecurityError, java_client_properties
from deploy_render.compose_kafka import IN_CONTAINER
from stack.config import MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS, REPO_ROOT, StackConfig
from stack.flinkconf import OFFICIAL, REPORTER_PREFIX, pipeline_entries, render
from stack.kafka_auth import MECHANISM, PROTOCOL, jaas_option
from stack.render import FLINK_LOG4J, RenderError, with_kafka_properties, with_tls_transport

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE_FLINK_CONF = COMPOSE_DIR / "flink-conf.yaml"
COMPOSE_FLINK_LOG4J = COMPOSE_DIR / "log4j-console.properties"
# The compose stack's mutual TLS (docker-compose.mtls.yml): the module it mounts, and where `python -m certs.tls`
# writes the certificates it mounts (gitignored).
COMPOSE_MODULE_MTLS = COMPOSE_DIR / "module.mtls.yaml"
COMPOSE_TLS_DIR = COMPOSE_DIR / "tls"
# The compose stack's secured Kafka (docker-compose.kafka-sasl.yml): the runtime's module and flink-conf, and the
# Java tools' client settings (the topics job, the broker's health check); their logins are in JAAS files that
# `python -m deploy_render.compose_kafka` makes (deploy_render/compose_kafka.py).
COMPOSE_MODULE_KAFKA_SASL = COMPOSE_DIR / "module.kafka-sasl.yaml"
COMPOSE_FLINK_CONF_KAFKA_SASL = COMPOSE_DIR / "flink-conf.kafka-sasl.yaml"
COMPOSE_KAFKA_TOOLS = COMPOSE_DIR / "kafka-tools.properties"

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
# The one Kafka setting of the Kubernetes stack: the generator and topics Jobs read it as a ConfigMap, and
# module.yaml is rendered with it (StateFun 3.3.0 resolves no placeholders in module.yaml).
K8S_KAFKA_ENV = K8S_DIR / "base" / "kafka.env"
# The names module.yaml and the manifests share.
K8S_MASTER_SERVICE = "statefun-master"
GREETER_URL_TLS = MODULE_GREETER_URL.replace("http://", "https://", 1)
# Where both container stacks mount the runtime's certificate files (ca.pem, runtime.pem, runtime-key.pem:
# certs/tls.py's names): the k8s mtls overlay from the statefun-tls Secret, docker-compose.mtls.yml from
# deploy/compose/tls/.
RUNTIME_TLS_DIR = Path("/etc/statefun/tls")

# components/kafka-sasl: a secured Kafka of your own. What you choose (protocol, mechanism, a private CA or the
# system's) is in its kafka-security.properties; every secret is in a Secret per client that you make, mounted at
# KAFKA_LOGIN_DIR: `client.jaas` (a Java client's KafkaClient login: the runtime, the topics Job, the Kafka CLI of
# an init container) and `client.properties` (a greeter CLI's --kafka-client-config file).
KAFKA_SASL_COMPONENT = "components/kafka-sasl"
KAFKA_SECURITY_SETTINGS = K8S_DIR / KAFKA_SASL_COMPONENT / "kafka-security.properties"
KAFKA_LOGIN_DIR = Path("/etc/greeter/kafka-login")
KAFKA_JAAS = KAFKA_LOGIN_DIR / "client.jaas"
KAFKA_CLIENT_CONFIG = KAFKA_LOGIN_DIR / "client.properties"
# The brokers' CA: key ca.pem of the ConfigMap greeter-kafka-ca (optional: without it, the system's CAs).
KAFKA_CA_DIR = Path("/etc/greeter/kafka-ca")
KAFKA_CA_FILE = KAFKA_CA_DIR / "ca.pem"
# The Kafka CLI's (kafka-topics.sh --command-config) settings: Java's, without a secret (ConfigMap greeter-kafka-cli).
KAFKA_CLI_PROPERTIES = "kafka-cli.properties"
KAFKA_CLI_DIR = Path("/etc/greeter/kafka-cli")
_SETTING_KEYS = ("security.protocol", "sasl.mechanism", "ssl.ca.location")


FLINK_CONF = "flink-conf.yaml"
MODULE_YAML = "module.yaml"


@dataclass(frozen=True)
class K8sVariant:
    """One kustomization under deploy/k8s: the settings its ConfigMaps are rendered from, and which of the two
    files live in its own folder (the others come from the kustomization it builds on).
    """

    config: StackConfig
    tls: bool
    own_files: tuple[str, ...] = ()
    kafka_sasl: bool = False  # components/kafka-sasl: a secured Kafka, the runtime's login from a Secret


_BASE = StackConfig()
# Production: one parallel subtask per partition of `names`, one TaskManager each.
_PROD = dataclasses.replace(_BASE, parallelism=_BASE.partitions)

# Every kustomization, by its folder under deploy/k8s; tests/static renders each one and holds it to this table.
K8S_VARIANTS: dict[str, K8sVariant] = {
    "base": K8sVariant(_BASE, tls=False, own_files=(FLINK_CONF, MODULE_YAML)),
    "overlays/demo": K8sVariant(_BASE, tls=False),  # base + the generator Job
    "overlays/mtls": K8sVariant(_BASE, tls=True, own_files=(MODULE_YAML,)),
    "overlays/prod": K8sVariant(_PROD, tls=True, own_files=(FLINK_CONF,)),  # mtls + parallelism
    "overlays/registry": K8sVariant(_BASE, tls=False),  # base + every image from your registry
    "overlays/ha": K8sVariant(_BASE, tls=False),  # base + Flink's Kubernetes high availability
    "overlays/object-store": K8sVariant(_BASE, tls=False),  # ha + checkpoints in S3 instead of the volume
    "overlays/kafka-sasl": K8sVariant(_BASE, tls=False, kafka_sasl=True),  # base + components/kafka-sasl
}
# Components that carry rendered files of their own, as the variant they render.
K8S_COMPONENT_VARIANTS: dict[str, K8sVariant] = {
    KAFKA_SASL_COMPONENT: K8sVariant(_BASE, tls=False, own_files=(FLINK_CONF, MODULE_YAML), kafka_sasl=True),
}


# The checkpoint volume's kustomizations, applied once on their own (no rendered files): several nodes
# (ReadWriteMany, the cluster's default class or NFS's) or a single-node development cluster (ReadWriteOnce).
K8S_STORAGE = ("storage/shared", "storage/nfs", "storage/single-node")
# Kustomize components, which an overlay includes (they do not render alone).
K8S_COMPONENTS = ("components/registry", "components/high-availability", KAFKA_SASL_COMPONENT)


# Flink splits a list of folders (io.tmp.dirs, taskmanager.state.local.root-dirs, state.backend.rocksdb.localdir) on
# "," and ":" before reading any part, so each must be a plain absolute path: the official image's
# `file:///local/state/recovery` is read as the relative folder `file` plus `///local/state/recovery`, and the
# TaskManager dies creating `file/localState_...` (tests/static/flink_paths.py).
FLINK_PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
CONTAINER_PROMETHEUS_PORT = 9249
PLAIN_PATH = "a plain path: Flink splits this option on ',' and ':', so a file:// URI would become the folder `file`"


def image_entries() -> list[tuple[str, str, str]]:
    """Paths inside the apache/flink-statefun image, the same in compose and Kubernetes."""
    return [
        ("statefun.flink-job-name", "Greeter", "the job's name in the REST API and web UI"),
        ("state.backend.rocksdb.localdir", "/local/state/rocksdb", f"{OFFICIAL}; {PLAIN_PATH}"),
        ("taskmanager.state.local.root-dirs", "/local/state/recovery",
         f"the {OFFICIAL}'s folder; {PLAIN_PATH} (the image's own `file:///local/state/recovery` does that)"),
        (f"{REPORTER_PREFIX}.factory.class", FLINK_PROMETHEUS_FACTORY,
         "Flink's Prometheus reporter, from the image's plugins/metrics-prometheus: every JobManager and TaskManager"),
        (f"{REPORTER_PREFIX}.port", str(CONTAINER_PROMETHEUS_PORT),
         "Prometheus scrapes each container or pod here (its own network namespace: every interface is fine)"),
    ]  # fmt: skip


def container_entries() -> list[tuple[str, str, str]]:
    """Compose: hosts and ports are the image's (MASTER_HOST); containers reach each other directly."""
    return [
        *image_entries(),
        ("state.checkpoints.dir", "file:///checkpoint-dir", "a volume shared by master and worker"),
        ("rest.bind-address", "0.0.0.0", "the web UI is published to the host (8081)"),
    ]


def k8s_entries() -> list[tuple[str, str, str]]:
    """Kubernetes: the workers reach the master through a Service, so every port it names is pinned."""
    return [
        *image_entries(),
        ("state.checkpoints.dir", "file:///checkpoint-dir",
         "the PersistentVolumeClaim statefun-checkpoints, shared by master and workers"),
        ("high-availability.storageDir", "file:///checkpoint-dir/ha",
         "read only with components/high-availability: the job graph and checkpoint pointers it records"),
        ("process.taskmanager.working-dir", "/local/state/working-dir",
         "with the pod's name as resource id, a restarted worker container finds its slots and local state here"),
        ("rest.bind-address", "0.0.0.0", f"the {K8S_MASTER_SERVICE} Service reaches the REST API and web UI (8081)"),
        ("jobmanager.rpc.port", "6123", f"the {K8S_MASTER_SERVICE} Service's rpc port (Flink's default, explicit)"),
        ("blob.server.port", "6124",
         f"the {K8S_MASTER_SERVICE} Service's blob port: Flink's default is a random port, which no Service exposes"),
        ("taskmanager.rpc.port", "6122", "pinned: the workers' liveness probe checks it"),
    ]  # fmt: skip


# Flink's own heartbeat defaults (HeartbeatManagerOptions), kept on Kubernetes.
FLINK_HEARTBEAT_INTERVAL_MS = 10_000
FLINK_HEARTBEAT_TIMEOUT_MS = 50_000

# Shared entries that differ on Kubernetes, where parallelism means TaskManagers and pods share nodes:
# (value or None to keep, why).
_K8S_OVERRIDES = {
    "taskmanager.numberOfTaskSlots": ("1", "one slot per TaskManager: each worker pod runs one parallel subtask"),
    "parallelism.default": (None, "= the statefun-worker Deployment's replicas (one slot each)"),
    "heartbeat.interval": (str(FLINK_HEARTBEAT_INTERVAL_MS), "Flink's default: see heartbeat.timeout"),
    "heartbeat.timeout": (str(FLINK_HEARTBEAT_TIMEOUT_MS),
        "Flink's default: on a shared cluster a GC pause, a network blip or a busy node stalls a pod for seconds, "
        "and the local stack's 5 s would fail the job each time; a dead worker's pod is restarted by Kubernetes"),
}  # fmt: skip


def render_compose_flink_conf() -> str:
    """deploy/compose/flink-conf.yaml: the shared pipeline entries plus the container ones."""
    header = "Rendered by `python -m deploy_render` from the settings the local stack uses."
    return render(pipeline_entries(StackConfig()) + container_entries(), header)


def render_compose_flink_log4j() -> str:
    """deploy/compose/log4j-console.properties: the local stack's Flink logging (console only, the Kafka clients'
    config dumps at WARN), in place of the image's, which logs every transactional producer's config.
    """
    body = FLINK_LOG4J.split("\n", 1)[1]  # after the local stack's own header line
    header = "# Rendered by `python -m deploy_render` from the local stack's (stack/render.py).\n"
    return header + body


def compose_kafka_client_properties() -> dict[str, str]:
    """The Java clients' settings in the secured compose stack (the runtime's, the Kafka tools'): SASL_SSL with
    SCRAM, the CA where every container mounts it; no login.
    """
    return java_client_properties(PROTOCOL, MECHANISM, IN_CONTAINER.ca)


def render_compose_module_kafka_sasl(source: str | None = None) -> str:
    """The repository's module.yaml with the secured Kafka's client settings on its ingress and egress."""
    source = (REPO_ROOT / "module.yaml").read_text(encoding="utf-8") if source is None else source
    header = (
        "# Rendered by `python -m deploy_render` from the repository's module.yaml, for the secured\n"
        "# Kafka of docker-compose.kafka-sasl.yml: SASL_SSL with SCRAM and the CA it mounts. No secret: the runtime's\n"
        "# login is in the JAAS file that env.java.opts.taskmanager names. Edit module.yaml, then render again.\n"
    )
    return header + with_kafka_properties(source, compose_kafka_client_properties())


def render_compose_flink_conf_kafka_sasl() -> str:
    """deploy/compose/flink-conf.yaml with the TaskManagers' JAAS file (their Kafka clients' login)."""
    header = (
        "Rendered by `python -m deploy_render` for docker-compose.kafka-sasl.yml: flink-conf.yaml "
        "and the runtime's Kafka login."
    )
    jaas = jaas_option(IN_CONTAINER.runtime_jaas)
    why = "the runtime's Kafka login (deploy_render/compose_kafka.py): only the TaskManagers run Kafka clients"
    return render(
        [*pipeline_entries(StackConfig()), *container_entries(), ("env.java.opts.taskmanager", jaas, why)], header
    )


def render_compose_kafka_tools() -> str:
    """The Kafka tools' --command-config in the secured compose stack; their login (admin) is the JAAS file that
    KAFKA_OPTS names.
    """
    lines = [
        "# Rendered by `python -m deploy_render`: the Kafka tools' client settings in the secured",
        "# compose stack (docker-compose.kafka-sasl.yml). No secret: the login is in the JAAS file KAFKA_OPTS names.",
    ]
    lines += [f"{key}={value}" for key, value in compose_kafka_client_properties().items()]
    return "\n".join(lines) + "\n"


def with_container_tls(module_yaml: str) -> str:
    """module.yaml for mutual TLS in a container stack: https:// to the greeter, and the transport's certificate
    files in RUNTIME_TLS_DIR, merged by the same code as the local stack's --tls (stack/render.py).
    """
    if MODULE_GREETER_URL not in module_yaml:
        raise RenderError(f"module.yaml does not contain {MODULE_GREETER_URL!r}: update stack/config.py")
    return with_tls_transport(module_yaml.replace(MODULE_GREETER_URL, GREETER_URL_TLS), CertFiles(RUNTIME_TLS_DIR))


def render_compose_module_mtls(source: str | None = None) -> str:
    """The repository's module.yaml (whose hosts are the compose services') with mutual TLS."""
    source = (REPO_ROOT / "module.yaml").read_text(encoding="utf-8") if source is None else source
    header = (
        "# Rendered by `python -m deploy_render` from the repository's module.yaml, with mutual TLS:\n"
        f"# https:// and the runtime's certificate files in {RUNTIME_TLS_DIR}, where docker-compose.mtls.yml mounts\n"
        "# them from deploy/compose/tls/ (minted by `python -m certs.tls`). Edit module.yaml, then render again.\n"
    )
    return header + with_container_tls(source)


def render_k8s_flink_conf(variant: K8sVariant) -> str:
    """A kustomization's flink-conf.yaml: the pipeline entries with the Kubernetes overrides, then k8s_entries."""
    header = (
        "Rendered by `python -m deploy_render` from the settings the local stack uses; "
        "kustomize makes it the statefun-flink-conf ConfigMap."
    )
    shared = []
    for key, value, why in pipeline_entries(variant.config):
        override, k8s_why = _K8S_OVERRIDES.get(key, (None, why))
        shared.append((key, override or value, k8s_why))
    login = []
    if variant.kafka_sasl:
        # The workers run the ingress and egress; the master runs no Kafka client. A JVM option, not sasl.jaas.config
        # in module.yaml, which would put the password in a ConfigMap.
        login.append(("env.java.opts.taskmanager", f"-Djava.security.auth.login.config={KAFKA_JAAS}",
                      "the runtime's Kafka login (KafkaClient), from the greeter-kafka-runtime Secret"))  # fmt: skip
    return render(shared + k8s_entries() + login, header)


def k8s_kafka_security(settings: Path = KAFKA_SECURITY_SETTINGS) -> dict[str, str]:
    """components/kafka-sasl's choices (KEY=VALUE lines: security.protocol, sasl.mechanism, and ssl.ca.location,
    which is the mounted CA or absent for the system's) as a Java client's properties, without a secret.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(settings.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or key not in _SETTING_KEYS:
            raise RenderError(f"{settings}, line {number}: expected KEY=VALUE, KEY one of {', '.join(_SETTING_KEYS)}")
        values[key] = value
    ca = values.get("ssl.ca.location")
    if ca is not None and Path(ca) != KAFKA_CA_FILE:
        raise RenderError(f"{settings}: ssl.ca.location is {KAFKA_CA_FILE} (the greeter-kafka-ca mount) or absent")
    try:
        return java_client_properties(
            values.get("security.protocol", "SASL_SSL").upper(),
            values.get("sasl.mechanism", "SCRAM-SHA-512").upper(),
            KAFKA_CA_FILE if ca is not None else None,
        )
    except KafkaSecurityError as error:
        raise RenderError(f"{settings}: {error}") from None


def render_k8s_kafka_cli_properties(settings: Path = KAFKA_SECURITY_SETTINGS) -> str:
    """components/kafka-sasl's kafka-cli.properties: the Kafka CLI's --command-config (its login from the JAAS
    file that KAFKA_OPTS names).
    """
    header = (
        "# Rendered by `python -m deploy_render` from kafka-security.properties; kustomize makes it\n"
        "# the greeter-kafka-cli ConfigMap: kafka-topics.sh --command-config, its login from KAFKA_OPTS' JAAS file.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in k8s_kafka_security(settings).items())


def k8s_bootstrap_servers(env_file: Path = K8S_KAFKA_ENV) -> str:
    """The Kafka bootstrap servers of the Kubernetes stack, from its one setting."""
    for line in env_file.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name == BOOTSTRAP_ENV and value.strip():
            return value.strip()
    raise RenderError(f"{env_file}: no {BOOTSTRAP_ENV}=host:port line")


def render_k8s_module_yaml(variant: K8sVariant, source: str | None = None, bootstrap: str | None = None) -> str:
    """The repository's module.yaml with Kafka's address from kafka.env and, for mtls, the TLS transport."""
    source = (REPO_ROOT / "module.yaml").read_text(encoding="utf-8") if source is None else source
    bootstrap = k8s_bootstrap_servers() if bootstrap is None else bootstrap
    for expected in (MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS):
        if expected not in source:
            raise RenderError(
                f"module.yaml does not contain {expected!r}: update stack/config.py and deploy_render/manifests.py"
            )
    rendered = source.replace(MODULE_KAFKA_ADDRESS, bootstrap)
    what = "Kafka from deploy/k8s/base/kafka.env"
    if variant.kafka_sasl:
        why = "Rendered by deploy_render from kafka-security.properties: no secret (the login is client.jaas)."
        rendered = with_kafka_properties(rendered, k8s_kafka_security(), why)
        what += f"; its security from {KAFKA_SASL_COMPONENT}/kafka-security.properties"
    if variant.tls:
        rendered = with_container_tls(rendered)
        what += f"; mutual TLS with the runtime's certificate files from the statefun-tls Secret in {RUNTIME_TLS_DIR}"
    header = (
        "# Rendered by `python -m deploy_render` from the repository's module.yaml: "
        f"{what}.\n# Edit those, then render again; kustomize makes this the statefun-module ConfigMap.\n"
    )
    return header + rendered


def rendered_files() -> dict[Path, str]:
    """Every file this module writes, with its content."""
    files = {
        COMPOSE_FLINK_CONF: render_compose_flink_conf(),
        COMPOSE_FLINK_LOG4J: render_compose_flink_log4j(),
        COMPOSE_MODULE_MTLS: render_compose_module_mtls(),
        COMPOSE_MODULE_KAFKA_SASL: render_compose_module_kafka_sasl(),
        COMPOSE_FLINK_CONF_KAFKA_SASL: render_compose_flink_conf_kafka_sasl(),
        COMPOSE_KAFKA_TOOLS: render_compose_kafka_tools(),
    }
    files[K8S_DIR / KAFKA_SASL_COMPONENT / KAFKA_CLI_PROPERTIES] = render_k8s_kafka_cli_properties()
    for name, variant in (K8S_VARIANTS | K8S_COMPONENT_VARIANTS).items():
        if FLINK_CONF in variant.own_files:
            files[K8S_DIR / name / FLINK_CONF] = render_k8s_flink_conf(variant)
        if MODULE_YAML in variant.own_files:
            files[K8S_DIR / name / MODULE_YAML] = render_k8s_module_yaml(variant)
    return files


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy_render",
        description="Render the container stacks' runtime configuration (deploy/compose, deploy/k8s) from the "
        "settings the local stack uses, and write every rendered file.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; print each file that differs from what is rendered (one path a line) and exit 1, "
        "or exit 0 when all match",
    )
    return parser


def stale_files(root: Path = REPO_ROOT) -> list[Path]:
    """The rendered files under `root` whose content differs from what is rendered (or that are missing)."""
    stale = []
    for path, text in rendered_files().items():
        target = root / path.relative_to(REPO_ROOT)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
    return stale


def main(argv: Sequence[str] | None = None, root: Path = REPO_ROOT) -> int:
    """`python -m deploy_render [--check]`: write every rendered file under `root`, or with --check only compare."""
    args = _parser().parse_args(argv)
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(path.relative_to(root))
        if stale:
            print(f"{len(stale)} rendered file(s) differ: run python -m deploy_render", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered_files().items():
        target = root / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target.relative_to(root)}", file=sys.stderr)
    return 0
