"""The Flink JVMs' command lines: the cluster's JobManager and TaskManager, as Flink's bin scripts would build
them, and the single-mode runtime, as `bin/flink run -t local` would.

Started by hand, the JVMs need the memory flags the scripts compute with BashJavaUtils, or the
TaskManager dies with "'taskmanager.cpu.cores' ... is not set".
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import JOB_ENTRY_CLASS, StackConfig
from .flinkconf import REPORTER_PREFIX, setting
from .metrics_plugin import PLUGIN_NAME, plugins_dir

JOBMANAGER_CLASS = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
CLIENT_CLASS = "org.apache.flink.client.cli.CliFrontend"  # what bin/flink runs
TASKMANAGER_CLASS = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
BASH_JAVA_UTILS = "org.apache.flink.runtime.util.bash.BashJavaUtils"
RESULT_PREFIX = "BASH_JAVA_UTILS_EXEC_RESULT:"

# Flink 1.18's default env.java.opts.all: 1.16 on Java 17 needs at least sun.net.util (else both JVMs die at
# start) and java.util/lang/concurrent opened (else the job submission fails); this is the safer superset.
JAVA17_OPTS = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
)


@dataclass(frozen=True)
class ResourceParams:
    """The memory settings BashJavaUtils computes for one JVM, as Flink's scripts pass them."""

    jvm_flags: list[str]  # -Xmx, -Xms, -XX:MaxDirectMemorySize, -XX:MaxMetaspaceSize
    dynamic: list[str]  # "-D key=value" pairs for the entry point, as computed by Flink


def parse_resource_params(output: str) -> ResourceParams:
    """BashJavaUtils prints its results on lines prefixed BASH_JAVA_UTILS_EXEC_RESULT: (JVM flags, then -D)."""
    results = [line[len(RESULT_PREFIX) :] for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if len(results) < 2:
        raise RuntimeError(f"BashJavaUtils printed no memory settings:\n{output[-3000:]}")
    return ResourceParams(shlex.split(results[-2]), shlex.split(results[-1]))


def classpath(config: StackConfig) -> str:
    """Flink's lib folder as a JVM classpath wildcard."""
    return str(config.lib_flink / "*")


def resource_params(java: str, config: StackConfig, role: str) -> ResourceParams:
    """`role`'s memory settings, from BashJavaUtils run against the rendered flink-conf.yaml."""
    command = "GET_JM_RESOURCE_PARAMS" if role == "jobmanager" else "GET_TM_RESOURCE_PARAMS"
    argv = [
        java,
        *_logging(config, f"{role}-bash-java-utils"),
        "-cp",
        classpath(config),
        BASH_JAVA_UTILS,
        command,
        "--configDir",
        str(config.conf_dir),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return parse_resource_params(result.stdout)


def java_opts(config: StackConfig, role: str) -> list[str]:
    """JVM options set in the rendered flink-conf, as Flink's scripts pass them: `env.java.opts` for every Flink
    JVM, then `env.java.opts.<role>` (jobmanager, taskmanager; the single-mode runtime takes `client`'s).
    """
    common, own = setting(config, "env.java.opts") or "", setting(config, f"env.java.opts.{role}") or ""
    return [*shlex.split(common), *shlex.split(own)]


def _logging(config: StackConfig, name: str) -> list[str]:
    log4j = f"file:{config.conf_dir}/log4j-console.properties"
    return [
        f"-Dlog.file={config.log_file(name)}",
        f"-Dlog4j.configuration={log4j}",
        f"-Dlog4j.configurationFile={log4j}",
    ]


def argv(java: str, config: StackConfig, name: str, params: ResourceParams) -> list[str]:
    """The JVM command of process `name`: `jobmanager`, or a TaskManager (`taskmanager`, `taskmanager-2`, ...)."""
    if name == "jobmanager":
        main_class, ports = JOBMANAGER_CLASS, {"metrics.internal.query-service.port": config.ports.jobmanager_metrics}
    elif name == "taskmanager":
        main_class, ports = TASKMANAGER_CLASS, {"metrics.internal.query-service.port": config.ports.taskmanager_metrics}
    else:
        # More TaskManagers (rescaling): the pinned ports are the first one's; these take free ones on loopback.
        main_class = TASKMANAGER_CLASS
        ports = {
            key: 0 for key in ("metrics.internal.query-service.port", "taskmanager.rpc.port", "taskmanager.data.port")
        }
    if name != "jobmanager" and config.runtime_metrics:  # Prometheus scrapes a fixed address per TaskManager
        ports[f"{REPORTER_PREFIX}.port"] = prometheus_port(config, name)
    return [
        java,
        *params.jvm_flags,
        *JAVA17_OPTS,
        *java_opts(config, "jobmanager" if name == "jobmanager" else "taskmanager"),
        *_logging(config, name),
        "-classpath",
        classpath(config),
        main_class,
        "--configDir",
        str(config.conf_dir),
        *params.dynamic,
        # one port per JVM for the metric query service: the shared flink-conf cannot pin two
        *(argument for key, port in ports.items() for argument in ("-D", f"{key}={port}")),
    ]


def prometheus_port(config: StackConfig, name: str) -> int:
    """Where JVM `name` serves its Prometheus metrics: the runtime and the JobManager on `prometheus`, TaskManager N
    (`taskmanager`, `taskmanager-N`) on `prometheus_taskmanager` + N - 1.
    """
    if name in ("runtime", "jobmanager"):
        return config.ports.prometheus
    return config.ports.prometheus_taskmanager + taskmanager_index(name) - 1


def taskmanager_index(name: str) -> int:
    """1 for `taskmanager`, N for `taskmanager-N`."""
    return 1 if name == "taskmanager" else int(name.rpartition("-")[2])


def single_argv(java: str, config: StackConfig, job_jar: Path, restore_from: Path | None) -> list[str]:
    """The single-mode JVM: Flink's client runs the job on a local mini cluster in its own process, reading the
    flink-conf.yaml in FLINK_CONF_DIR (daemons.env sets it) and serving the REST API and web UI on its port. It
    stays attached: the process lives as long as the job. `restore_from`: a retained checkpoint or savepoint.
    """
    # allowNonRestoredState: an operator removed since the checkpoint must not block the resume (as run_jar).
    restore = ["--fromSavepoint", str(restore_from), "--allowNonRestoredState"] if restore_from else []
    return [
        java,
        f"-Xmx{config.runtime_heap}",
        *JAVA17_OPTS,
        *java_opts(config, "client"),
        *_logging(config, "runtime"),
        "-classpath",
        # Flink's mini cluster loads metric reporters from the classpath only (it passes no plugin manager).
        f"{classpath(config)}:{plugins_dir(config.jvm_dir) / PLUGIN_NAME / '*'}",
        CLIENT_CLASS,
        "run",
        "--target",
        "local",
        "--parallelism",
        str(config.parallelism),
        *restore,
        "--class",
        JOB_ENTRY_CLASS,
        str(job_jar),
    ]
