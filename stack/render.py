"""Files rendered into the run folder: module.yaml with local hosts, and the JVMs' logging configs."""

from __future__ import annotations

import re
from collections.abc import Mapping

from certs.tls import CertFiles

from .config import HOST, MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS, StackConfig
from .kafka_auth import RUNTIME, client_security

ENDPOINT_KIND = "io.statefun.endpoints.v2/http"
ASYNC_TRANSPORT = "io.statefun.transports.v1/async"
EGRESS_KIND = "io.statefun.kafka.v1/egress"
KAFKA_KINDS = ("io.statefun.kafka.v1/ingress", EGRESS_KIND)


# The line between two YAML documents of module.yaml; the renderers edit each document and join them back with "---".
_DOCUMENT_BREAK = re.compile(r"(?m)^---[ \t]*$")


class RenderError(ValueError):
    """The source file is not what the renderer expects."""


def render_module_yaml(source: str, greeter_port: int, kafka_servers: str, tls: CertFiles | None = None) -> str:
    """The repository's module.yaml with only its hosts replaced (the Kafka address by `kafka_servers`, every
    broker's host:port, comma-separated); it stays the single source.

    With `tls`, the endpoint is https and its transport gets the CA to trust and the runtime's client certificate.
    """
    for expected in (MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS):
        if expected not in source:
            raise RenderError(
                f"module.yaml does not contain {expected!r}: the local stack replaces exactly "
                "that host; update stack/config.py if the container hosts changed"
            )
    scheme = "https" if tls else "http"
    rendered = source.replace(MODULE_GREETER_URL, f"{scheme}://{HOST}:{greeter_port}/statefun")
    rendered = rendered.replace(MODULE_KAFKA_ADDRESS, kafka_servers)
    return with_tls_transport(rendered, tls) if tls else rendered


def with_tls_transport(source: str, tls: CertFiles) -> str:
    """Add the TLS keys to the endpoint's async transport (StateFun 3.3's NettyRequestReplySpec), making one if
    the endpoint declares none. Text, not YAML: the rendered copy keeps the source's comments and order.

    Used by the local stack (--tls) and by deploy_render/manifests.py for the container stacks
    (docker-compose.mtls.yml, the Kubernetes mtls overlay).
    """
    documents = _DOCUMENT_BREAK.split(source)
    endpoints = [
        i for i, doc in enumerate(documents) if re.search(rf"(?m)^kind:\s*{re.escape(ENDPOINT_KIND)}\s*$", doc)
    ]
    if len(endpoints) != 1:
        raise RenderError(f"module.yaml has {len(endpoints)} {ENDPOINT_KIND} documents: --tls expects exactly one")
    doc = documents[endpoints[0]]
    url = re.search(r"(?m)^([ \t]+)urlPathTemplate:", doc)
    if url is None:
        raise RenderError("the endpoint in module.yaml has no urlPathTemplate")
    indent = url.group(1)
    # The files are named by file: URLs, which StateFun's ResourceLocator opens as they are.
    keys = {
        "trust_cacerts": tls.ca.resolve().as_uri(),
        "client_cert": tls.client_cert.resolve().as_uri(),
        "client_key": tls.client_key.resolve().as_uri(),
    }
    transport = re.search(rf"(?m)^{indent}transport:[ \t]*\n", doc)
    if transport is None:
        added = [f"{indent}# Rendered by the local stack (--tls): the runtime shows its certificate to the greeter."]
        added += [f"{indent}transport:", f"{indent * 2}type: {ASYNC_TRANSPORT}"]
        added += [f"{indent * 2}{key}: {value}" for key, value in keys.items()]
        doc = doc.rstrip("\n") + "\n" + "\n".join(added) + "\n"
    else:
        existing = re.match(rf"(?:{indent * 2}.*\n|[ \t]*(?:#.*)?\n)*", doc[transport.end() :])
        kind = re.search(rf"(?m)^{indent * 2}type:\s*(\S+)", existing.group(0) if existing else "")
        if kind is not None and kind.group(1) != ASYNC_TRANSPORT:
            raise RenderError(f"the endpoint's transport is {kind.group(1)}: --tls needs {ASYNC_TRANSPORT}")
        if any(re.search(rf"(?m)^[ \t]+{key}:", doc) for key in keys):
            raise RenderError("module.yaml already names TLS files: the local stack mints and names its own")
        lines = "".join(f"{indent * 2}{key}: {value}\n" for key, value in keys.items())
        doc = doc[: transport.end()] + lines + doc[transport.end() :]
    documents[endpoints[0]] = doc
    return "---".join(documents)


KAFKA_PROPERTIES_WHY = "Rendered for the secured broker: how the runtime reaches it (its login is not here)."


def _documents_of(documents: list[str], kinds: tuple[str, ...]) -> list[int]:
    """The indexes of the YAML documents whose `kind` is one of `kinds`."""
    pattern = "|".join(re.escape(kind) for kind in kinds)
    return [i for i, doc in enumerate(documents) if re.search(rf"(?m)^kind:\s*(?:{pattern})\s*$", doc)]


def with_kafka_properties(
    source: str, properties: Mapping[str, str], why: str = KAFKA_PROPERTIES_WHY, kinds: tuple[str, ...] = KAFKA_KINDS
) -> str:
    """Add `properties` to the Kafka clients of module.yaml's documents of `kinds` (its ingresses and egresses unless
    told: StateFun 3.3 passes a spec's `properties`, a list of one-key maps, to the Kafka client as they are).
    Text, as with_tls_transport: the rendered copy keeps the source's comments. None of them may be set already.
    """
    documents = _DOCUMENT_BREAK.split(source)
    kafka = _documents_of(documents, kinds)
    if not kafka:
        raise RenderError(f"module.yaml has no {' or '.join(kinds)} to set Kafka properties on")
    for index in kafka:
        doc = documents[index]
        for key in properties:
            if re.search(rf"(?m)^\s+- {re.escape(key)}:", doc):
                raise RenderError(f"module.yaml already sets the Kafka property {key}: the local stack sets its own")
        existing = re.search(r"(?m)^  properties:[ \t]*\n(?:[ \t]*#.*\n)*(?P<indent>[ \t]*)- ", doc)
        # The items' indentation as the source has it (a hand-written file indents them, yaml.dump does not).
        indent = existing["indent"] if existing else "    "
        lines = "".join(f"{indent}- {key}: {value}\n" for key, value in properties.items())
        if existing is None:
            comment = f"  # {why}\n"
            doc = doc.rstrip("\n") + "\n" + comment + "  properties:\n" + lines
        else:
            at = existing.start("indent")
            doc = doc[:at] + lines + doc[at:]
        documents[index] = doc
    return "---".join(documents)


EGRESS_OVERRIDES_WHY = "Rendered by the local stack over module.yaml's (StackConfig.egress_overrides)."


def with_transaction_timeout(source: str, timeout: str) -> str:
    """module.yaml with its egresses' exactly-once `transactionTimeout` replaced by `timeout` (e.g. "15s")."""
    documents = _DOCUMENT_BREAK.split(source)
    replaced = 0
    for index in _documents_of(documents, (EGRESS_KIND,)):
        documents[index], count = re.subn(
            r"(?m)^(\s+transactionTimeout:[ \t]*)\S+", rf"\g<1>{timeout}", documents[index]
        )
        replaced += count
    if not replaced:
        raise RenderError("module.yaml's egress has no transactionTimeout to replace")
    return "---".join(documents)


def write_module_yaml(config: StackConfig) -> str:
    """Render into the run folder; returns the file:// URL for statefun.remote.module-name."""
    rendered = render_module_yaml(
        config.module_yaml.read_text(encoding="utf-8"),
        config.endpoint_port or config.ports.greeter,
        config.bootstrap_servers,
        CertFiles(config.tls_dir) if config.tls else None,
    )
    security = client_security(config, RUNTIME)
    if security is not None:  # no secret: the runtime's login is in its JAAS file (stack/kafka_auth.py)
        rendered = with_kafka_properties(rendered, security.java_properties())
    if config.egress_overrides:
        rendered = with_kafka_properties(rendered, dict(config.egress_overrides), EGRESS_OVERRIDES_WHY, (EGRESS_KIND,))
    if config.egress_transaction_timeout:
        rendered = with_transaction_timeout(rendered, config.egress_transaction_timeout)
    target = config.conf_dir / "module.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered, encoding="utf-8")
    return target.resolve().as_uri()


# Flink's log4j-console.properties, to stdout (the supervisor sends stdout to run/<name>.log).
FLINK_LOG4J = """\
# Rendered by stack/render.py: Flink's console config; stdout goes to run/<process>.log.
monitorInterval = 30
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
logger.akka.name = akka
logger.akka.level = INFO
logger.kafka.name = org.apache.kafka
logger.kafka.level = INFO
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = INFO
logger.shaded_zookeeper.name = org.apache.flink.shaded.zookeeper3
logger.shaded_zookeeper.level = INFO
# Each transactional producer dumps its whole config at INFO: the TaskManager log grew by MBs per restart.
logger.producerconfig.name = org.apache.kafka.clients.producer.ProducerConfig
logger.producerconfig.level = WARN
logger.consumerconfig.name = org.apache.kafka.clients.consumer.ConsumerConfig
logger.consumerconfig.level = WARN
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""

# The broker's log4j 1 (reload4j) config, to stdout as well.
KAFKA_LOG4J = """\
# Rendered by stack/render.py; stdout goes to run/kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.state.change.logger=WARN
"""


def write_logging_configs(config: StackConfig) -> None:
    """Write the JVMs' log4j configs, Flink's and the broker's, into the conf folder."""
    config.conf_dir.mkdir(parents=True, exist_ok=True)
    (config.conf_dir / "log4j-console.properties").write_text(FLINK_LOG4J)
    (config.conf_dir / "kafka-log4j.properties").write_text(KAFKA_LOG4J)
