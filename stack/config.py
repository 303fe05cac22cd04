"""Ports, paths and versions of the local stack: the one place they are named.

Everything binds to 127.0.0.1 and every port is pinned, so two stacks (say, a developer's and the e2e
tests') can run side by side on different ports. Environment variables are read only by `from_env()`,
at start-up, never at import.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from greeter.config.settings import SEEN_COUNT_TTL_VARIABLE, seen_count_ttl
from greeter.config.wiring import DEAD_LETTER_TOPIC, GREETINGS_TOPIC, NAMES_TOPIC

from .freeports import free_ports
from .readiness import port_free

# Versions: stack/jvm/pom.xml carries the same values as defaults; the fetch passes these with -D, so this
# module wins, and tests/unit/test_stack_fetch.py holds the pom to them.
FLINK_VERSION = "1.16.2"
STATEFUN_VERSION = "3.3.0"  # runs on Flink 1.16.2
KAFKA_VERSION = "3.9.1"  # last 3.x: KRaft without --standalone, speaks StateFun's kafka-clients 3.2.3

HOST = "127.0.0.1"
STACK_DIR = Path(__file__).resolve().parent
REPO_ROOT = STACK_DIR.parent
JVM_DIR = STACK_DIR / "jvm"

TOPICS = (NAMES_TOPIC, GREETINGS_TOPIC, DEAD_LETTER_TOPIC)
INGRESS_GROUP = "greeter"  # module.yaml's consumerGroupId
JOB_ENTRY_CLASS = "org.apache.flink.statefun.flink.core.StatefulFunctionsJob"
JOB_JAR_GLOB = "statefun-flink-core-*.jar"
# The hosts of the repository's module.yaml (the container stack's); the local stack renders its own.
MODULE_GREETER_URL = "http://greeter:8000/statefun"
MODULE_KAFKA_ADDRESS = "kafka:9092"

ENV_PREFIX = "GREETER_STACK_"
# The greeter's own variable, which `up` also takes (`--seen-count-ttl`).
SEEN_COUNT_TTL_ENV = SEEN_COUNT_TTL_VARIABLE

# How the StateFun job runs: "single", in one JVM (Flink's local mini cluster, started by Flink's own client);
# "cluster", a JobManager and a TaskManager, as the container and Kubernetes stacks run it.
MODES = ("single", "cluster")
KAFKA_SECURITY_MODES = ("none", "sasl-ssl")
# Local Kafka brokers: one, or a three-voter KRaft cluster (a quorum of two survives one loss; two nodes would not).
BROKER_COUNTS = (1, 3)


class ConfigError(ValueError):
    """A bad setting; the message names the variable or flag."""


@dataclass(frozen=True)
class Ports:
    """The stack's TCP ports on 127.0.0.1, each settable by GREETER_STACK_PORT_<NAME>."""

    kafka: int = 9092
    kafka_controller: int = 9093
    # The second and third brokers' client and controller listeners (`brokers` 3 only).
    kafka_2: int = 9192
    kafka_controller_2: int = 9193
    kafka_3: int = 9292
    kafka_controller_3: int = 9293
    greeter: int = 8000
    flink_rest: int = 8081
    jobmanager_rpc: int = 6123
    blob_server: int = 6124
    # metrics.internal.query-service.port: each JVM runs one, so each gets its own port.
    jobmanager_metrics: int = 6125
    taskmanager_metrics: int = 6126
    taskmanager_rpc: int = 6122
    taskmanager_data: int = 6121
    # Flink's Prometheus reporter: the JobManager's (in single mode, the one runtime JVM's); TaskManager N serves
    # on prometheus_taskmanager + N - 1.
    prometheus: int = 9249
    prometheus_taskmanager: int = 9250

    def in_use(self, unused: Collection[str] = ()) -> list[tuple[str, int]]:
        """The ports a server could not bind on HOST now, each with its name; those named in `unused` (the stack
        does not bind them) are not checked.
        """
        return [
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if f.name not in unused and not port_free(HOST, getattr(self, f.name))
        ]

    def broker(self, number: int) -> tuple[int, int]:
        """Broker `number`'s (1, 2 or 3) client and controller ports."""
        suffix = "" if number == 1 else f"_{number}"
        return getattr(self, f"kafka{suffix}"), getattr(self, f"kafka_controller{suffix}")

    @classmethod
    def free(cls) -> Ports:
        """Distinct free ports (tests, benchmarks), never handed to another stack starting meanwhile (freeports)."""
        return cls(*free_ports(len(fields(cls)), HOST))


@dataclass(frozen=True)
class Extra:
    """An extra command started after the job runs (generator, consumer); its log is run/<name>.log."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class StackConfig:
    """Everything a local stack is started with; stack.json records it so `down`, `status` and `logs` reuse it."""

    run_dir: Path = REPO_ROOT / "run"
    ports: Ports = field(default_factory=Ports)
    module_yaml: Path = REPO_ROOT / "module.yaml"
    venv_bin: Path = REPO_ROOT / ".venv" / "bin"
    jvm_dir: Path = JVM_DIR
    # Exactly-once egress commits on each checkpoint, so this bounds end-to-end latency; 2 s measured well.
    checkpoint_interval_ms: int = 2000
    retained_checkpoints: int = 3
    # Flink's defaults (10 s / 50 s) took 21-23 s to recover from a TaskManager kill; these took 11 s.
    heartbeat_interval_ms: int = 1000
    heartbeat_timeout_ms: int = 5000
    parallelism: int = 1
    # Cluster mode: slots per TaskManager; the stack starts as many TaskManagers as the parallelism needs
    # (`taskmanagers`). One each, as on Kubernetes: rescaling starts and stops whole JVMs.
    taskmanager_slots: int = 1
    mode: str = "single"  # one of MODES
    # Every JVM sized for this job (BENCHMARKS.md, "Every JVM sized for this job"; `scripts/bench-profile memory`).
    # The single-mode JVM's heap ceiling (without one the JVM may take a quarter of the machine's memory): 124 MB
    # in use after a million-name backlog.
    runtime_heap: str = "256m"
    # The cluster's JVMs, sized by Flink from these process sizes: heaps of 192 MB and 304 MB.
    jobmanager_memory: str = "768m"
    taskmanager_memory: str = "1024m"
    # The broker's heap: 78 MB in use after the same backlog, once its log cleaner's buffer (below) stopped taking
    # 128 MB of it.
    kafka_heap: str = "128m"
    kafka_cleaner_buffer_bytes: int = 16 * 1024 * 1024
    greeter_workers: int = 2
    # Seconds before the greeter forgets a user (0: never); None: GREETER_SEEN_COUNT_TTL passes through from the
    # environment. daemons.env writes it into the greeter's.
    seen_count_ttl: int | None = None
    partitions: int = 4
    max_message_bytes: int = 1024 * 1024  # a 60 KiB poison record must fit; bounded so one cannot be huge
    start_timeout_s: float = 120.0  # per process; the job takes 12-17 s on this machine
    stop_timeout_s: float = 30.0  # SIGTERM, then SIGKILL; over the greeter's graceful stop (20 s), as compose's
    # Mutual TLS between the runtime and the greeter, with certificates minted into the run folder (certs/tls.py):
    # off by default because everything is on loopback; on, it runs the path a real deployment needs.
    tls: bool = False
    # Kafka's security: "none" (plaintext, loopback only) or "sasl-ssl": SASL_SSL with SCRAM-SHA-512 and an ACL per
    # client (stack/kafka_auth.py), with the credentials in the run folder.
    kafka_security: str = "none"
    # Local Kafka brokers, one of BROKER_COUNTS: with 3, every topic and the transaction log have replication factor
    # 3 and min.insync.replicas 2, as a production cluster would.
    brokers: int = 1
    # A cgroup v2 path (relative to the cgroup2 mount, e.g. /sys/fs/cgroup/unified), which must exist: broker N is
    # started in <it>/broker-N, so iptables' `-m cgroup --path` can cut the brokers' traffic to each other apart from
    # the clients' (the network partition test, tests/faults/test_kafka_cluster.py). None: wherever `up` runs.
    broker_cgroup: str | None = None
    # Flink's Prometheus reporter on every JVM (ports.prometheus, prometheus_taskmanager): its cost is in
    # BENCHMARKS.md ("The runtime's metrics").
    runtime_metrics: bool = True
    # The port module.yaml sends the runtime to: the greeter's, unless something sits in between (the fault
    # tests' HTTP proxy). None: the greeter's.
    endpoint_port: int | None = None
    # flink-conf.yaml keys set over the rendered ones (benchmark variants: e.g. heap state instead of RocksDB).
    flink_overrides: tuple[tuple[str, str], ...] = ()
    # The broker's server.properties keys set over the rendered ones, and the egress's over module.yaml's: its
    # Kafka producer properties and its exactly-once `transactionTimeout` (e.g. "15s"). The timeout tests shorten
    # the clients' timeouts with them (tests/faults/test_kafka_timeouts.py); a user's deployment sets them in
    # module.yaml and the broker's own configuration (docs/operations.md, "How long an outage").
    kafka_overrides: tuple[tuple[str, str], ...] = ()
    egress_overrides: tuple[tuple[str, str], ...] = ()
    egress_transaction_timeout: str | None = None
    extras: tuple[Extra, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.kafka_security not in KAFKA_SECURITY_MODES:
            raise ConfigError(
                f"kafka security {self.kafka_security!r}: expected one of {', '.join(KAFKA_SECURITY_MODES)}"
            )
        if self.brokers not in BROKER_COUNTS:
            raise ConfigError(f"brokers {self.brokers}: expected one of {', '.join(map(str, BROKER_COUNTS))}")
        if self.brokers > 1 and self.kafka_security != "none":
            raise ConfigError("--kafka-security sasl-ssl runs one broker: it cannot be combined with --brokers 3")
        if self.parallelism < 1 or self.taskmanager_slots < 1:
            raise ConfigError(
                f"parallelism {self.parallelism}, taskmanager slots {self.taskmanager_slots}: each must be at least 1"
            )

    @property
    def taskmanagers(self) -> int:
        """Cluster mode's TaskManagers: enough slots for the parallelism."""
        return -(-self.parallelism // self.taskmanager_slots)

    @property
    def lib_flink(self) -> Path:
        """The JobManager's and TaskManager's jars: Flink and the StateFun distribution (stack/fetch.py fills it)."""
        return self.jvm_dir / "lib" / "flink"

    @property
    def lib_kafka(self) -> Path:
        """The broker's jars."""
        return self.jvm_dir / "lib" / "kafka"

    @property
    def lib_job(self) -> Path:
        """The job jar, statefun-flink-core alone: uploaded to Flink and run."""
        return self.jvm_dir / "lib" / "job"

    @property
    def conf_dir(self) -> Path:
        """The rendered configuration: flink-conf.yaml, module.yaml, server.properties, the log4j files."""
        return self.run_dir / "conf"

    @property
    def checkpoint_dir(self) -> Path:
        """Flink's checkpoints; `up` resumes from the newest retained one unless --fresh."""
        return self.run_dir / "checkpoints"

    @property
    def savepoint_dir(self) -> Path:
        """Where `greeter-stack savepoint` writes; `up --fresh` leaves it alone (savepoints are the user's)."""
        return self.run_dir / "savepoints"

    @property
    def kafka_data_dir(self) -> Path:
        """The (first) broker's log dir: topics, offsets and the KRaft metadata."""
        return self.broker_data_dir(1)

    def broker_data_dir(self, number: int) -> Path:
        """Broker `number`'s log dir: kafka-data, kafka-data-2, kafka-data-3."""
        return self.run_dir / ("kafka-data" if number == 1 else f"kafka-data-{number}")

    @property
    def flink_work_dir(self) -> Path:
        """Flink's working folders: RocksDB, local recovery, temporary files, uploaded jars."""
        return self.run_dir / "flink"

    @property
    def tls_dir(self) -> Path:
        """Where `up --tls` mints the certificates (certs/tls.py)."""
        return self.run_dir / "tls"

    @property
    def state_file(self) -> Path:
        """stack.json: this config, the processes started and the job (stack/state.py)."""
        return self.run_dir / "stack.json"

    @property
    def broker_numbers(self) -> range:
        """The brokers' numbers, which are their KRaft node ids: 1, or 1 to 3."""
        return range(1, self.brokers + 1)

    def broker_address(self, number: int) -> str:
        """Broker `number`'s client listener, host:port."""
        return f"{HOST}:{self.ports.broker(number)[0]}"

    @property
    def unused_ports(self) -> tuple[str, ...]:
        """The Ports fields this stack binds nothing on: the listeners of brokers it does not run."""
        return tuple(f"{name}_{n}" for n in range(self.brokers + 1, 4) for name in ("kafka", "kafka_controller"))

    @property
    def bootstrap_servers(self) -> str:
        """Every broker's address for clients, comma-separated (any one answering is enough to start)."""
        return ",".join(self.broker_address(n) for n in self.broker_numbers)

    @property
    def rest_url(self) -> str:
        """Flink's REST API (and web UI)."""
        return f"http://{HOST}:{self.ports.flink_rest}"

    @property
    def greeter_url(self) -> str:
        """The greeter's base URL: https with `tls`."""
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.ports.greeter}"

    def log_file(self, name: str) -> Path:
        """The log of process `name` (its stdout and stderr): run/<name>.log."""
        return self.run_dir / f"{name}.log"

    def to_json(self) -> dict[str, Any]:
        """This config as JSON-ready data, paths as strings (for stack.json)."""
        data = dataclasses.asdict(self)
        result: dict[str, Any] = json.loads(json.dumps(data, default=str))  # Paths to strings
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackConfig:
        """The config `to_json` wrote."""
        values = dict(data)
        values["ports"] = Ports(**values["ports"])
        values["extras"] = tuple(Extra(e["name"], tuple(e["argv"])) for e in values.get("extras", ()))
        for name in ("flink_overrides", "kafka_overrides", "egress_overrides"):
            values[name] = tuple((key, value) for key, value in values.get(name, ()))
        for name in ("run_dir", "module_yaml", "venv_bin", "jvm_dir"):
            values[name] = Path(values[name])
        return cls(**values)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _path(text: str) -> Path:
    return Path(text).expanduser().resolve()


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected one of {', '.join(_BOOLEANS)}") from None


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"expected one of {', '.join(MODES)}")
    return text


def _kafka_security(text: str) -> str:
    if text not in KAFKA_SECURITY_MODES:
        raise ValueError(f"expected one of {', '.join(KAFKA_SECURITY_MODES)}")
    return text


def _brokers(text: str) -> int:
    value = int(text)
    if value not in BROKER_COUNTS:
        raise ValueError(f"expected one of {', '.join(map(str, BROKER_COUNTS))}")
    return value


def _cgroup_path(text: str) -> str:
    if any(part in ("", ".", "..") for part in text.split("/")):  # also a leading or trailing "/"
        raise ValueError("expected a cgroup path relative to the cgroup2 mount, e.g. greeter-stack")
    return text


def _seen_count_ttl(text: str) -> int:
    # The greeter's own parser: a value the greeter would refuse is refused here, before anything starts.
    return seen_count_ttl({SEEN_COUNT_TTL_ENV: text})


@dataclass(frozen=True)
class EnvSetting:
    """A StackConfig field that an environment variable (and `greeter-stack up`'s flag of the same name) sets."""

    field: str
    variable: str
    parse: Callable[[str], Any]  # raises ValueError saying what is wrong
    help: str = ""  # what `greeter-stack --help` says of it before its variable (a port says only its variable)

    def read(self, text: str, source: str) -> Any:
        """`text` parsed, or ConfigError naming `source` (the variable or flag) and the value."""
        try:
            return self.parse(text)
        except ValueError as error:
            raise ConfigError(f"{source}={text!r}: {error}") from None


def _setting(field: str, parse: Callable[[str], Any], help: str, variable: str | None = None) -> EnvSetting:
    """The setting of StackConfig's `field`: its variable is GREETER_STACK_<FIELD> unless `variable` is given."""
    return EnvSetting(field, variable or ENV_PREFIX + field.upper(), parse, help)


RUN_DIR = _setting("run_dir", _path, "the one folder for logs, state and PIDs")
# What `greeter-stack up` takes as flags too. Ports are GREETER_STACK_PORT_<NAME>.
UP_SETTINGS: tuple[EnvSetting, ...] = (
    _setting(
        "checkpoint_interval_ms", _count, "Flink checkpoint interval; exactly-once output is committed at this pace"
    ),
    _setting("heartbeat_interval_ms", _count, "Flink heartbeat interval"),
    _setting("heartbeat_timeout_ms", _count, "Flink heartbeat timeout: how fast a dead TaskManager is noticed"),
    _setting("mode", _mode, "single: the job in one JVM (quick start); cluster: a JobManager and a TaskManager"),
    _setting("parallelism", _count, "job parallelism: in cluster mode, TaskManagers x slots"),
    _setting(
        "taskmanager_slots",
        _count,
        "cluster mode: slots per TaskManager (the stack starts parallelism / slots TaskManagers)",
    ),
    _setting("greeter_workers", _count, "gunicorn workers of the greeter"),
    _setting(
        "seen_count_ttl",
        _seen_count_ttl,
        "seconds before the greeter forgets a user; unset = inherit",
        SEEN_COUNT_TTL_ENV,
    ),
    _setting("partitions", _count, "partitions of each topic"),
    _setting("start_timeout_s", float, "deadline for each process to become ready"),
    _setting("stop_timeout_s", float, "SIGTERM grace before SIGKILL"),
    _setting(
        "runtime_metrics",
        _bool,
        "Flink's Prometheus reporter on each JVM: the runtime or JobManager on port PROMETHEUS, TaskManager N on "
        "PROMETHEUS_TASKMANAGER + N - 1",
    ),
    _setting("tls", _bool, "mutual TLS between the runtime and the greeter, with certificates minted into RUN_DIR/tls"),
    _setting(
        "kafka_security",
        _kafka_security,
        "none: plaintext Kafka; sasl-ssl: SASL_SSL (SCRAM-SHA-512) and an ACL per client, with each client's "
        "credentials in RUN_DIR/kafka-clients/",
    ),
    _setting(
        "brokers",
        _brokers,
        "local Kafka brokers: 1, or 3 (a KRaft cluster, topics and transaction log at replication factor 3, min ISR 2)",
    ),
    _setting(
        "broker_cgroup",
        _cgroup_path,
        "an existing cgroup v2 path (relative to its mount): broker N runs in PATH/broker-N; unset = where `up` runs",
    ),
)


def port_env_var(name: str) -> str:
    """The variable that sets port `name`: GREETER_STACK_PORT_<NAME>."""
    return f"{ENV_PREFIX}PORT_{name.upper()}"


def from_env(environ: Mapping[str, str] | None = None) -> StackConfig:
    """The defaults overridden by the environment; a bad value fails naming its variable."""
    env = os.environ if environ is None else environ
    values = {
        setting.field: setting.read(env[setting.variable], setting.variable)
        for setting in (RUN_DIR, *UP_SETTINGS)
        if env.get(setting.variable, "") != ""
    }
    ports = {
        p.name: EnvSetting(p.name, port_env_var(p.name), _count).read(env[port_env_var(p.name)], port_env_var(p.name))
        for p in fields(Ports)
        if env.get(port_env_var(p.name), "") != ""
    }
    return StackConfig(ports=Ports(**ports), **values)
