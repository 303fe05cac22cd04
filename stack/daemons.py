"""The daemons of the stack in each mode: their command lines, environments and readiness checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from certs.tls import CertFiles
from greeter.config.settings import TLS_VARIABLES, TlsFiles, tls_environment
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE

from . import flink, kafka, procs
from .config import HOST, SEEN_COUNT_TTL_ENV, StackConfig
from .fetch import job_jar
from .metrics_plugin import plugins_dir
from .readiness import StartError, http_ok
from .rest import FlinkRest

GREETER = "greeter"
TASKMANAGER = "taskmanager"


def services(config: StackConfig) -> tuple[str, ...]:
    """Started first, in this order: the brokers, then the greeter, which comes before the job that calls it;
    `down` stops in reverse.
    """
    return (*kafka.broker_names(config), GREETER)


def taskmanager_names(count: int) -> tuple[str, ...]:
    """The cluster's TaskManager processes: taskmanager, taskmanager-2, ... taskmanager-<count>."""
    return tuple(TASKMANAGER if index == 1 else f"{TASKMANAGER}-{index}" for index in range(1, count + 1))


def runtime_names(config: StackConfig) -> tuple[str, ...]:
    """The Flink processes of `config`'s mode, in start order."""
    return ("runtime",) if config.mode == "single" else ("jobmanager", *taskmanager_names(config.taskmanagers))


def names(config: StackConfig) -> tuple[str, ...]:
    """The daemons of `config`'s mode, in start order."""
    return services(config) + runtime_names(config)


def task_processes(config: StackConfig) -> tuple[str, ...]:
    """The processes that run the job's tasks: the single-mode runtime, or the cluster's TaskManagers."""
    return ("runtime",) if config.mode == "single" else taskmanager_names(config.taskmanagers)


def task_logs(config: StackConfig) -> list[Path]:
    """The logs of the processes that run the job's tasks (and log the runtime's delivery retries)."""
    return [config.log_file(name) for name in task_processes(config)]


def argv(java: str, config: StackConfig, name: str, restore_from: Path | None = None) -> list[str]:
    """The command line of daemon `name`. For a cluster JVM it runs BashJavaUtils first, which reads the
    rendered flink-conf.yaml. The single-mode runtime runs the job itself: `restore_from` is the checkpoint it
    resumes from.
    """
    if name in kafka.broker_names(config):
        return kafka.argv(java, config, kafka.broker_number(name))
    if name == "greeter":
        serve = config.venv_bin / "greeter-serve"
        if not serve.exists():
            raise StartError(f"{serve} not found: create the virtualenv (uv sync)")
        # gunicorn writes its own pid file: the readiness check uses it to know the answer is ours.
        return [str(serve), "--bind", f"{HOST}:{config.ports.greeter}", "--workers", str(config.greeter_workers),
                "--pid", str(config.run_dir / "greeter.pid")]  # fmt: skip
    if name == "runtime":
        return flink.single_argv(java, config, job_jar(config), restore_from)
    role = "jobmanager" if name == "jobmanager" else TASKMANAGER
    return flink.argv(java, config, name, flink.resource_params(java, config, role))


def env(config: StackConfig, name: str) -> dict[str, str]:
    """The environment of daemon `name`: this process's, and for the greeter its metrics folder, TTL and TLS
    variables, the TLS ones from `config` only (the shell's are dropped).
    """
    values = dict(os.environ)
    if name == "runtime":
        values["FLINK_CONF_DIR"] = str(config.conf_dir)  # where Flink's client reads flink-conf.yaml
    if name in runtime_names(config) and name != "runtime":  # the single-mode JVM has it on its classpath
        values["FLINK_PLUGINS_DIR"] = str(plugins_dir(config.jvm_dir))  # the Prometheus reporter
    if name == "greeter":
        if config.seen_count_ttl is not None:
            values[SEEN_COUNT_TTL_ENV] = str(config.seen_count_ttl)
        # prometheus multi-process files under the run folder, not in /tmp
        values[MULTIPROC_DIR_VARIABLE] = str(config.run_dir / "greeter-metrics")
        for variable in TLS_VARIABLES:  # module.yaml is rendered for config.tls, not for what the shell has
            values.pop(variable, None)
        if config.tls:
            files = CertFiles(config.tls_dir)
            values |= tls_environment(TlsFiles(files.server_cert, files.server_key, files.ca))
    return values


def ready_check(config: StackConfig, rest: FlinkRest, name: str, proc: procs.Proc) -> Callable[[], str | None]:
    """Real readiness, and that what answers is ours, not another stack's on the same port."""
    if name in kafka.broker_names(config):
        return lambda: kafka.broker_ready(config, kafka.broker_number(name))  # checks the cluster id too
    if name == "greeter":
        # With TLS, as the runtime will: trusting our CA, showing the client certificate.
        context = CertFiles(config.tls_dir).client_context() if config.tls else None
        return lambda: http_ok(f"{config.greeter_url}/readyz", context) or _greeter_is(config, proc)
    if name in ("jobmanager", "runtime"):  # the single-mode JVM serves the same REST API
        return lambda: _jobmanager_is_ours(config, rest)

    # Started one after another: the Nth is ready once N TaskManagers and their slots are registered.
    index = flink.taskmanager_index(name)
    slots = min(index * config.taskmanager_slots, config.parallelism)

    def taskmanager() -> str | None:
        overview = rest.overview()
        if overview["taskmanagers"] < index or overview["slots-total"] < slots:
            return f"{overview['taskmanagers']} TaskManagers, {overview['slots-total']} slots registered"
        return None

    return taskmanager


def _greeter_is(config: StackConfig, proc: procs.Proc) -> str | None:
    pid_file = config.run_dir / "greeter.pid"
    pid = pid_file.read_text().strip() if pid_file.exists() else "none"
    return None if pid == str(proc.pid) else f"gunicorn's pid file says {pid}, we started {proc.pid}"


def _jobmanager_is_ours(config: StackConfig, rest: FlinkRest) -> str | None:
    settings = {entry["key"]: entry["value"] for entry in rest.get("/jobmanager/config")}
    ours = str(config.flink_work_dir / "web-upload")
    found = settings.get("web.upload.dir")
    return None if found == ours else f"the JobManager answering has web.upload.dir {found}, not {ours}"
