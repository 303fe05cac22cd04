"""stack/flink.py: the JVM command lines, as Flink's bin scripts would build them."""

from pathlib import Path

import pytest

from stack.config import JOB_ENTRY_CLASS, Ports, StackConfig
from stack.flink import CLIENT_CLASS, JAVA17_OPTS, argv, parse_resource_params, single_argv
from stack.flinkconf import NETTY_CHUNKS

OUTPUT = """\
INFO some log line
BASH_JAVA_UTILS_EXEC_RESULT:-Xmx536870920 -Xms536870920 -XX:MaxDirectMemorySize=268435458 -XX:MaxMetaspaceSize=268435456
BASH_JAVA_UTILS_EXEC_RESULT:-D taskmanager.memory.network.min=134217730b -D taskmanager.cpu.cores=1.0
"""


def test_parse_resource_params() -> None:
    params = parse_resource_params(OUTPUT)
    assert params.jvm_flags[0] == "-Xmx536870920" and len(params.jvm_flags) == 4
    assert params.dynamic == ["-D", "taskmanager.memory.network.min=134217730b", "-D", "taskmanager.cpu.cores=1.0"]


def test_no_result_lines_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no memory settings"):
        parse_resource_params("Exception in thread main\n")


@pytest.mark.parametrize(
    ("role", "main_class"), [("jobmanager", "StandaloneSessionClusterEntrypoint"), ("taskmanager", "TaskManagerRunner")]
)
def test_argv(tmp_path: Path, role: str, main_class: str) -> None:
    ports = Ports.free()
    config = StackConfig(run_dir=tmp_path, ports=ports)
    command = argv("/usr/bin/java", config, role, parse_resource_params(OUTPUT))
    assert command[0] == "/usr/bin/java"
    assert "--add-exports=java.base/sun.net.util=ALL-UNNAMED" in command
    assert set(JAVA17_OPTS) <= set(command)
    assert any(part.endswith(main_class) for part in command)
    assert command[command.index("--configDir") + 1] == str(tmp_path / "conf")
    metrics = ports.jobmanager_metrics if role == "jobmanager" else ports.taskmanager_metrics
    dynamic = [command[i + 1] for i, part in enumerate(command) if part == "-D"]
    assert f"metrics.internal.query-service.port={metrics}" in dynamic
    # The JobManager's reporter port is flink-conf's; each TaskManager's is its own.
    reporter = [entry for entry in dynamic if entry.startswith("metrics.reporter.prom.port=")]
    assert reporter == ([] if role == "jobmanager" else [f"metrics.reporter.prom.port={ports.prometheus_taskmanager}"])
    assert f"-Dlog.file={tmp_path / (role + '.log')}" in command


def test_further_taskmanagers_log_apart_and_take_free_ports(tmp_path: Path) -> None:
    # The pinned ports (flink-conf.yaml) are the first TaskManager's: a second JVM on them would not start.
    config = StackConfig(run_dir=tmp_path, mode="cluster", parallelism=3)
    command = argv("/usr/bin/java", config, "taskmanager-3", parse_resource_params(OUTPUT))
    assert any(part.endswith("TaskManagerRunner") for part in command)
    assert f"-Dlog.file={tmp_path / 'taskmanager-3.log'}" in command
    dynamic = {command[i + 1] for i, part in enumerate(command) if part == "-D"}
    for key in ("taskmanager.rpc.port", "taskmanager.data.port", "metrics.internal.query-service.port"):
        assert f"{key}=0" in dynamic
    # Prometheus needs a fixed address per TaskManager: the third serves two above the first.
    assert f"metrics.reporter.prom.port={config.ports.prometheus_taskmanager + 2}" in dynamic


def test_java_options_from_the_flink_conf_overrides_reach_each_jvm_as_flinks_scripts_pass_them(tmp_path: Path) -> None:
    overrides = (
        ("env.java.opts", "-XX:+AlwaysPreTouch"),
        ("env.java.opts.taskmanager", "-XX:+UseParallelGC -Dx='a b'"),
    )
    config = StackConfig(run_dir=tmp_path, mode="cluster", flink_overrides=overrides)
    taskmanager = argv("/usr/bin/java", config, "taskmanager-2", parse_resource_params(OUTPUT))
    jobmanager = argv("/usr/bin/java", config, "jobmanager", parse_resource_params(OUTPUT))
    main_class = next(i for i, part in enumerate(taskmanager) if part.endswith("TaskManagerRunner"))
    assert {"-XX:+AlwaysPreTouch", "-XX:+UseParallelGC", "-Dx=a b"} <= set(taskmanager[:main_class])
    assert "-XX:+AlwaysPreTouch" in jobmanager and "-XX:+UseParallelGC" not in jobmanager
    # an override replaces the shipped env.java.opts, as it replaces the line in flink-conf.yaml
    assert NETTY_CHUNKS not in taskmanager and NETTY_CHUNKS not in jobmanager


def test_the_shipped_java_options_reach_every_flink_jvm_and_the_single_runtime(tmp_path: Path) -> None:
    cluster = StackConfig(run_dir=tmp_path, mode="cluster")
    for name in ("jobmanager", "taskmanager"):
        assert NETTY_CHUNKS in argv("/usr/bin/java", cluster, name, parse_resource_params(OUTPUT))
    single = single_argv("/usr/bin/java", StackConfig(run_dir=tmp_path), tmp_path / "job.jar", None)
    assert single.index(NETTY_CHUNKS) < single.index(CLIENT_CLASS)


@pytest.mark.parametrize("restore_from", [None, Path("/run/checkpoints/j/chk-7")])
def test_single_argv_runs_the_job_through_flinks_client(tmp_path: Path, restore_from: Path | None) -> None:
    config = StackConfig(run_dir=tmp_path, parallelism=2, runtime_heap="384m")
    command = single_argv("/usr/bin/java", config, Path("/jars/statefun-flink-core-3.3.0.jar"), restore_from)
    assert command[:2] == ["/usr/bin/java", "-Xmx384m"]
    assert set(JAVA17_OPTS) <= set(command)
    client = command.index(CLIENT_CLASS)
    assert command[client + 1 : client + 6] == ["run", "--target", "local", "--parallelism", "2"]
    assert command[-3:] == ["--class", JOB_ENTRY_CLASS, "/jars/statefun-flink-core-3.3.0.jar"]
    restore = ["--fromSavepoint", str(restore_from), "--allowNonRestoredState"] if restore_from else []
    assert command[client + 6 : -3] == restore
    assert f"-Dlog.file={tmp_path / 'runtime.log'}" in command
