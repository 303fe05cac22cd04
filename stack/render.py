"""Files rendered into the run folder: module.yaml with local hosts, and the JVMs' logging configs."""

from __future__ import annotations

from .config import HOST, MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS, StackConfig


class RenderError(ValueError):
    """The source file is not what the renderer expects."""


def render_module_yaml(source: str, greeter_port: int, kafka_port: int) -> str:
    """The repository's module.yaml with only its hosts replaced; it stays the single source."""
    for expected in (MODULE_GREETER_URL, MODULE_KAFKA_ADDRESS):
        if expected not in source:
            raise RenderError(
                f"module.yaml does not contain {expected!r}: the local stack replaces exactly "
                "that host; update stack/config.py if the container hosts changed"
            )
    rendered = source.replace(MODULE_GREETER_URL, f"http://{HOST}:{greeter_port}/statefun")
    return rendered.replace(MODULE_KAFKA_ADDRESS, f"{HOST}:{kafka_port}")


def write_module_yaml(config: StackConfig) -> str:
    """Render into the run folder; returns the file:// URL for statefun.remote.module-name."""
    rendered = render_module_yaml(
        config.module_yaml.read_text(encoding="utf-8"), config.ports.greeter, config.ports.kafka
    )
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
    config.conf_dir.mkdir(parents=True, exist_ok=True)
    (config.conf_dir / "log4j-console.properties").write_text(FLINK_LOG4J)
    (config.conf_dir / "kafka-log4j.properties").write_text(KAFKA_LOG4J)
