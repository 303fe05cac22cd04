"""flink-conf.yaml for the local session cluster: the official StateFun image's settings plus ours.

Each entry carries a one-line why; the rendered file repeats it as a comment above the key.
"""

from __future__ import annotations

from .config import HOST, StackConfig
from .kafka_auth import runtime_jvm_options
from .metrics_plugin import LOOPBACK_FACTORY

# The Prometheus reporter's settings: metrics.reporter.<name>.*, the name Flink's docs use.
REPORTER_PREFIX = "metrics.reporter.prom"

# (key, value, why). The official image's flink-conf.yaml (apache/flink-statefun tools/docker), kept as is
# except for the folders, which live under the run folder.
OFFICIAL = "official StateFun image"
NETWORK_MEMORY = "16m"
# Flink's shaded Netty (4.1.70), used by StateFun's HTTP client, reads its allocator settings under its own prefix.
NETTY_CHUNKS = "-Dorg.apache.flink.shaded.netty4.io.netty.allocator.maxOrder=9"


def pipeline_entries(config: StackConfig) -> list[tuple[str, str, str]]:
    """How the job runs: the same in every stack (local, compose, k8s); held together by tests/static."""
    slots = config.parallelism if config.mode == "single" else config.taskmanager_slots
    return [
        ("classloader.parent-first-patterns.additional", "org.apache.flink.statefun;org.apache.kafka;"
         "com.google.protobuf", OFFICIAL + ": the job jar and lib/ share these classes"),
        ("restart-strategy", "fixed-delay", OFFICIAL),
        ("restart-strategy.fixed-delay.attempts", "2147483647", OFFICIAL + ": never give up on the job"),
        ("restart-strategy.fixed-delay.delay", "1sec", OFFICIAL),
        ("cluster.registration.error-delay", "1000",
         "a TaskManager that cannot reach the JobManager retries after 1 s, not Flink's 10 s: after a JobManager "
         "restart it registered up to 10 s late (RELIABILITY.md, where a recovery's seconds go)"),
        ("statefun.async.max-per-task", "1024",
         "no more requests in flight per task than the transport has pooled connections (pool_size 1024); "
         "StateFun's 32768 let a backlog queue for them past the 20 s acquire timeout: retry storms and job "
         "failures at 1,000,000 names (BENCHMARKS.md, the floor run's retries)"),
        ("state.backend", "rocksdb", OFFICIAL + ": state larger than memory"),
        ("state.backend.rocksdb.timer-service.factory", "ROCKSDB", OFFICIAL),
        ("state.backend.incremental", "true", OFFICIAL + ": checkpoints upload only new SST files"),
        ("state.backend.local-recovery", "true", OFFICIAL),
        ("state.backend.rocksdb.memory.partitioned-index-filters", "true", OFFICIAL),
        ("state.backend.rocksdb.checkpoint.transfer.thread.num", "8", OFFICIAL),
        ("state.backend.rocksdb.thread.num", "4", OFFICIAL),
        ("pipeline.auto-generate-uids", "false", OFFICIAL + ": StateFun sets its own operator uids"),
        ("execution.savepoint.ignore-unclaimed-state", "true", OFFICIAL),
        ("execution.checkpointing.interval", f"{config.checkpoint_interval_ms}ms",
         "without it the exactly-once egress silently has no guarantee; bounds end-to-end latency"),
        ("execution.checkpointing.mode", "EXACTLY_ONCE", "the egress commits its Kafka transaction per checkpoint"),
        ("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION",
         "a stopped job can resume from its latest retained checkpoint"),
        ("state.checkpoints.num-retained", str(config.retained_checkpoints),
         "a spare if the newest is incomplete when the cluster stops"),
        ("jobmanager.memory.process.size", config.jobmanager_memory,
         "a 192 MB heap: the JobManager keeps one job's metadata (BENCHMARKS.md: every JVM sized)"),
        ("taskmanager.memory.process.size", config.taskmanager_memory,
         "a 304 MB heap with the memory below: the image's 4g is for bigger state (BENCHMARKS.md: every JVM sized)"),
        ("taskmanager.memory.managed.size", "128m",
         "RocksDB's cache and write buffers for this small state: a mini cluster's default, in both modes; the "
         "cluster's 40 % is far more (BENCHMARKS.md: every JVM sized)"),
        ("taskmanager.memory.network.min", NETWORK_MEMORY,
         "network buffers are allocated and touched at start: 64 MB by default, this job's graph needs a few MB"),
        ("taskmanager.memory.network.max", NETWORK_MEMORY, "see taskmanager.memory.network.min"),
        ("env.java.opts", NETTY_CHUNKS,
         "4 MiB pool chunks (Netty's default since 4.1.75) instead of 16 MiB: the HTTP client holds one per thread"),
        ("taskmanager.numberOfTaskSlots", str(slots),
         "single mode: the one local TaskManager has a slot per subtask; cluster mode: rescaling starts or stops "
         "TaskManagers"),
        ("parallelism.default", str(config.parallelism), "= TaskManagers x slots"),
        ("heartbeat.interval", str(config.heartbeat_interval_ms),
         "a killed TaskManager is noticed in ~5 s instead of 50 s: recovery took 11 s, not 21-23 s"),
        ("heartbeat.timeout", str(config.heartbeat_timeout_ms), "see heartbeat.interval"),
        ("web.refresh-interval", "1000",
         "how long the REST API serves a cached view of a job (Flink's 3 s): `up` saw a running job 3 s late"),
        ("web.exception-history-size", "1000",
         "the job's failure count is this history's length (the default keeps 16); numRestarts stayed 0"),
        ("metrics.job.status.enable", "STATE",
         "a 0/1 gauge per job state (runningState, restartingState, ...): what the job-down alert reads"),
    ]  # fmt: skip


def local_entries(config: StackConfig, module_url: str) -> list[tuple[str, str, str]]:
    """Where the local processes keep their files and how they find each other: loopback, pinned ports."""
    p = config.ports
    work = config.flink_work_dir
    entries = [
        ("statefun.flink-job-name", "Greeter (local stack)", "the job's name in the REST API and web UI"),
        ("statefun.remote.module-name", module_url, "the rendered module.yaml (local hosts); both JVMs read it"),
        ("state.backend.rocksdb.localdir", str(work / "rocksdb"), "under the run folder"),
        ("state.backend.rocksdb.log.dir", str(work / "rocksdb-logs"),
         "RocksDB writes one LOG per operator per attempt; keep them out of the Flink log folder"),
        ("taskmanager.state.local.root-dirs", str(work / "local-recovery"), "under the run folder"),
        ("state.checkpoints.dir", config.checkpoint_dir.resolve().as_uri(), "under the run folder"),
        ("jobmanager.rpc.address", HOST, "loopback only"),
        ("jobmanager.bind-host", HOST, "loopback only"),
        ("jobmanager.rpc.port", str(p.jobmanager_rpc), "pinned"),
        ("taskmanager.host", HOST, "loopback only"),
        ("taskmanager.bind-host", HOST, "loopback only"),
        ("taskmanager.rpc.port", str(p.taskmanager_rpc), "pinned"),
        ("taskmanager.data.port", str(p.taskmanager_data), "pinned"),
        ("blob.server.port", str(p.blob_server), "pinned"),
        ("rest.address", HOST, "loopback only"),
        ("rest.bind-address", HOST, "loopback only"),
        ("rest.port", str(p.flink_rest), "pinned"),
        ("rest.bind-port", str(p.flink_rest), "pinned"),
        # metrics.internal.query-service.port differs per JVM: passed as -D by stack/flink.py.
        ("io.tmp.dirs", str(work / "tmp"), "under the run folder"),
        ("web.tmpdir", str(work / "web-tmp"), "under the run folder"),
        ("web.upload.dir", str(work / "web-upload"), "under the run folder"),
    ]  # fmt: skip
    if config.runtime_metrics:
        entries += [
            (f"{REPORTER_PREFIX}.factory.class", LOOPBACK_FACTORY,
             "Flink's Prometheus reporter on loopback only (stack/metrics_plugin.py): Flink's binds every interface"),
            (f"{REPORTER_PREFIX}.host", HOST, "loopback only"),
            (f"{REPORTER_PREFIX}.port", str(p.prometheus), "pinned; each TaskManager gets its own by -D"),
        ]  # fmt: skip
    jaas = runtime_jvm_options(config)
    if jaas:
        why = "the secured Kafka's login (stack/kafka_auth.py): only the JVMs that run Kafka clients"
        entries += [("env.java.opts.taskmanager", jaas, why), ("env.java.opts.client", jaas, why + " (single mode)")]
    return entries


def entries(config: StackConfig, module_url: str) -> list[tuple[str, str, str]]:
    """The local stack's entries, pipeline then local. A `flink_overrides` key replaces its entry's value in
    place, or is appended when no entry has it.
    """
    rendered = pipeline_entries(config) + local_entries(config, module_url)
    overrides = dict(config.flink_overrides)
    why = "set over the default by the stack's caller"
    result = []
    for key, value, reason in rendered:
        result.append((key, overrides.pop(key), why) if key in overrides else (key, value, reason))
    return result + [(key, value, why) for key, value in overrides.items()]


def setting(config: StackConfig, key: str) -> str | None:
    """What the rendered flink-conf.yaml sets `key` to: the pipeline's entry, or the caller's override."""
    return next((value for name, value, _why in entries(config, module_url="") if name == key), None)


def render(entries: list[tuple[str, str, str]], header: str) -> str:
    """flink-conf.yaml text: the header, then each entry below its why as a comment."""
    lines = [f"# {header}"]
    for key, value, why in entries:
        lines.append(f"# {why}")
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def render_flink_conf(config: StackConfig, module_url: str) -> str:
    """The local stack's flink-conf.yaml."""
    header = "Rendered by stack/flinkconf.py for the local stack; edit that file, not this one."
    return render(entries(config, module_url), header)


def write_flink_conf(config: StackConfig, module_url: str) -> None:
    """Write flink-conf.yaml into the conf folder and create the working folders it names."""
    config.conf_dir.mkdir(parents=True, exist_ok=True)
    (config.conf_dir / "flink-conf.yaml").write_text(render_flink_conf(config, module_url), encoding="utf-8")
    for key in ("rocksdb", "rocksdb-logs", "local-recovery", "tmp", "web-tmp", "web-upload"):
        (config.flink_work_dir / key).mkdir(parents=True, exist_ok=True)
