"""Tuning, measured: every setting the stack ships with against its alternative, on the pipeline benchmark's load.

Each variant changes one thing from the shipped defaults (module.yaml, flink-conf, the greeter's gunicorn
settings) and runs its own stack (free ports, a temporary folder): a warm-up backlog, then for each --names
point a throughput backlog, then a latency run at --rate over the last point's names (bench/load.py: committed
greetings/s read under read_committed, produce-to-visible delay, CPU per process, every name verified 1..k).
Rounds are interleaved: round 1 runs the variants in order, round 2 in reverse, and so on, so each variant's
median is compared with the default's median from the same run (this machine drifts up to 2x in minutes).

Usage: scripts/bench-tuning [--variants default,okhttp] [--names 100,10000] [--messages 100000] [--repeat 2]
                            [--mode cluster|single]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench import load
from bench.pipeline import RESULTS, cli, names_list, say, targets
from stack.config import HOST, MODES, Ports, StackConfig
from stack.daemons import runtime_names
from stack.flink import prometheus_port
from stack.local import LocalStack
from stack.logs import delivery_retries
from stack.render import ENDPOINT_KIND

INGRESS_KIND = "io.statefun.kafka.v1/ingress"
EGRESS_KIND = "io.statefun.kafka.v1/egress"
ASYNC_TRANSPORT = "io.statefun.transports.v1/async"
OKHTTP_TRANSPORT = "io.statefun.transports.v1/okhttp"


@dataclass(frozen=True)
class Variant:
    name: str
    setting: str  # what differs from the default, for the table
    config: Mapping[str, Any] = field(default_factory=dict)  # StackConfig fields
    endpoint: Mapping[str, Any] = field(default_factory=dict)  # keys of module.yaml's endpoint spec
    producer: Mapping[str, str] = field(default_factory=dict)  # the exactly-once egress's Kafka producer properties
    consumer: Mapping[str, str] = field(default_factory=dict)  # the ingress's Kafka consumer properties
    # The stack's environment, which every process inherits: the greeter's GREETER_* settings, glibc's.
    environment: Mapping[str, str] = field(default_factory=dict)


PREVIOUS_KAFKA = {"kafka_heap": "512m", "kafka_cleaner_buffer_bytes": 128 * 1024 * 1024}
PREVIOUS_NETWORK_LOCAL = (
    ("taskmanager.memory.network.min", "64m"),
    ("taskmanager.memory.network.max", "64m"),
    ("env.java.opts", ""),
)
PREVIOUS_NETWORK_CLUSTER = (
    ("taskmanager.memory.network.min", "64m"),
    ("taskmanager.memory.network.max", "1g"),
    ("taskmanager.memory.managed.size", "435m"),  # 40 % of the 1088 MB Flink memory of a 1536m process
    ("env.java.opts", ""),
)

VARIANTS = (
    Variant("default", "as shipped: 2 GreeterWorkers (uvicorn), async transport, maxNumBatchRequests 10000, 2 s "
            "checkpoints, parallelism 1, RocksDB, egress producer linger.ms 20 and batch.size 256 KiB"),
    Variant("workers-1", "1 gunicorn worker", config={"greeter_workers": 1}),
    Variant("workers-3", "3 gunicorn workers", config={"greeter_workers": 3}),
    Variant("sync-worker", "gunicorn's stock `sync` worker class", environment={"GREETER_WORKER_CLASS": "sync"}),
    Variant("okhttp", f"transport {OKHTTP_TRANSPORT}",
            endpoint={"transport": {"type": OKHTTP_TRANSPORT, "timeouts": {"call": "1min"}}}),
    Variant("batch-1000", "maxNumBatchRequests 1000 (StateFun's default)", endpoint={"maxNumBatchRequests": 1000}),
    Variant("checkpoint-1s", "checkpoints every 1 s", config={"checkpoint_interval_ms": 1000}),
    Variant("checkpoint-5s", "checkpoints every 5 s", config={"checkpoint_interval_ms": 5000}),
    Variant("parallelism-2", "parallelism 2 (2 task slots)", config={"parallelism": 2, "taskmanager_slots": 2}),
    Variant("async-max-4096", "statefun.async.max-per-task 4096 (shipped 1024, StateFun's default 32768)",
            config={"flink_overrides": (("statefun.async.max-per-task", "4096"),)}),
    # StateFun's own bound, against the shipped 1024 (stack/flinkconf.py: the transport's pool_size).
    Variant("async-max-32768", "statefun.async.max-per-task 32768, StateFun's default (shipped 1024)",
            config={"flink_overrides": (("statefun.async.max-per-task", "32768"),)}),
    Variant("taskmanager-2g", "taskmanager.memory.process.size 2048m (shipped 1536m)",
            config={"taskmanager_memory": "2048m"}),
    Variant("parallel-gc", "TaskManager on the Parallel collector instead of G1",
            config={"flink_overrides": (("env.java.opts.taskmanager", "-XX:+UseParallelGC"),)}),
    Variant("heap-state", "heap state (hashmap) instead of RocksDB",
            config={"flink_overrides": (("state.backend", "hashmap"), ("state.backend.incremental", "false"))}),
    Variant("producer-defaults", "egress producer at the Kafka client's defaults: linger.ms 0, batch.size 16 KiB",
            producer={"linger.ms": "0", "batch.size": str(16 * 1024)}),
    # The async transport's connection pool (StateFun's default 1024): one request in flight per connection.
    Variant("pool-size-16", "async transport pool_size 16 (StateFun's default 1024)",
            endpoint={"transport": {"type": ASYNC_TRANSPORT, "call": "1min", "pool_size": 16}}),
    Variant("pool-size-128", "async transport pool_size 128 (StateFun's default 1024)",
            endpoint={"transport": {"type": ASYNC_TRANSPORT, "call": "1min", "pool_size": 128}}),
    Variant("consumer-fetch-batching", "ingress consumer fetch.min.bytes 32 KiB, fetch.max.wait.ms 100 "
            "(defaults 1 B, 500 ms): fewer, fuller fetches at a low rate",
            consumer={"fetch.min.bytes": str(32 * 1024), "fetch.max.wait.ms": "100"}),
    # glibc gives each thread that allocates an arena of its own, up to 8 per core: RocksDB's and Netty's native
    # memory spread over them (the container images preload jemalloc instead, as the Flink image does).
    Variant("kafka-sasl-ssl", "Kafka over SASL_SSL (SCRAM-SHA-512), an ACL per client (--kafka-security sasl-ssl)",
            config={"kafka_security": "sasl-ssl"}),
    # Every other variant's JVMs serve Flink's Prometheus reporter and are scraped every second while they run.
    Variant("no-runtime-metrics", "Flink's Prometheus reporter off (--no-runtime-metrics), so nothing scraped",
            config={"runtime_metrics": False}),
    Variant("malloc-arena-2", "MALLOC_ARENA_MAX=2 for every process (glibc's default: up to 8 arenas per core)",
            environment={"MALLOC_ARENA_MAX": "2"}),
    # Every JVM as it was sized before BENCHMARKS.md's "Every JVM sized for this job": Flink's and Kafka's
    # defaults where this job does not need them, and 2-3x the heaps. One variant per mode: the mini cluster and
    # the cluster sized their memory differently.
    Variant("before-sizing", "single mode as sized before: runtime heap 512m, network memory 64m (the mini "
            "cluster's default), Netty's 16 MiB chunks; Kafka heap 512m with its 128 MiB cleaner buffer",
            config={"runtime_heap": "512m", **PREVIOUS_KAFKA, "flink_overrides": PREVIOUS_NETWORK_LOCAL}),
    Variant("before-sizing-cluster", "cluster mode as sized before: JobManager 1024m, TaskManager 1536m with "
            "Flink's default network (10 %, at least 64m) and managed memory (40 %: 435m), Netty's 16 MiB chunks; "
            "Kafka heap 512m with its 128 MiB cleaner buffer",
            config={"jobmanager_memory": "1024m", "taskmanager_memory": "1536m", **PREVIOUS_KAFKA,
                    "flink_overrides": PREVIOUS_NETWORK_CLUSTER}),
)  # fmt: skip
BY_NAME = {variant.name: variant for variant in VARIANTS}


def module_yaml(source: str, variant: Variant) -> str:
    """The repository's module.yaml with the variant's endpoint keys and Kafka client properties set."""
    documents = [doc for doc in yaml.safe_load_all(source) if doc]
    for doc in documents:
        if doc["kind"] == ENDPOINT_KIND:
            doc["spec"].update(variant.endpoint)
        elif doc["kind"] == EGRESS_KIND and variant.producer:
            _set_properties(doc["spec"], variant.producer)
        elif doc["kind"] == INGRESS_KIND and variant.consumer:
            _set_properties(doc["spec"], variant.consumer)
    return yaml.safe_dump_all(documents, sort_keys=False)


def _properties(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Kafka ingress's or egress's `properties` (in module.yaml a list of one-key maps) as one map."""
    return {key: value for entry in spec.get("properties", []) for key, value in entry.items()}


def _set_properties(spec: dict[str, Any], values: Mapping[str, str]) -> None:
    """The spec's `properties` with `values` set over them."""
    spec["properties"] = [{key: value} for key, value in (_properties(spec) | dict(values)).items()]


@contextmanager
def stack_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Every process inherits the stack's environment (stack/daemons.py): set the variant's around it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_variant(variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """One round of one variant on its own fresh stack."""
    with tempfile.TemporaryDirectory(prefix=f"bench-tuning-{variant.name}-") as work:
        module = Path(work) / "module.yaml"
        module.write_text(module_yaml(StackConfig().module_yaml.read_text(encoding="utf-8"), variant))
        # Cluster by default: the topology the container and Kubernetes stacks run; single for the quick start's.
        base = StackConfig(run_dir=Path(work) / "run", ports=Ports.free(), module_yaml=module, mode=args.mode)
        config = replace(base, **variant.config)
        stack = LocalStack(config, report=lambda line: say(f"[stack] {line}"))
        with stack_environment(variant.environment), contextlib.ExitStack() as scraping:
            try:
                started = time.monotonic()
                stack.up(fresh=True)
                scraper = scraping.enter_context(RuntimeMetricsScraper(config, SCRAPE_INTERVAL_S))
                result: dict[str, Any] = {"up_seconds": round(time.monotonic() - started, 1)}
                result["ran_with"] = ran_with(config) | {"MALLOC_ARENA_MAX": inherited(stack, "MALLOC_ARENA_MAX")}
                settle_s = 3 * config.checkpoint_interval_ms / 1000  # a late duplicate would be committed by then
                target = targets(stack, None, settle_s)["statefun"]
                load.throughput(target, load.name_pool("warmup", args.names[0]), args.warmup)
                result["throughput"] = {
                    str(names): load.throughput(target, load.name_pool(f"tp{names}", names), args.messages)
                    for names in args.names
                }
                pool = load.name_pool(f"lat{args.names[-1]}", args.names[-1])
                result["latency"] = load.latency(target, pool, args.rate, args.latency_seconds)
                result["job_failures"] = stack.failure_count()
                result["failed_deliveries"] = delivery_retries(stack.config)
                result["runtime_metrics_scrapes"] = {"served": scraper.scrapes, "failed": scraper.failures}
            finally:
                scraping.close()
                stack.down()
    say(f"[tuning] {variant.name}: {json.dumps(brief(result))}")
    return result


# Prometheus scrapes every 15 s by default; every second is the harsher load the monitoring tests put on it.
SCRAPE_INTERVAL_S = 1.0


class RuntimeMetricsScraper:
    """While the stack runs, GET every Flink JVM's Prometheus endpoint each `interval` seconds, as Prometheus
    would, so the reporter's cost includes serving it; a no-op when the stack runs without the reporter."""

    def __init__(self, config: StackConfig, interval: float) -> None:
        self.urls = [f"http://{HOST}:{prometheus_port(config, name)}/metrics" for name in runtime_names(config)]
        self.enabled = config.runtime_metrics
        self.interval = interval
        self.scrapes = 0
        self.failures = 0  # a JVM that did not answer: the table's figures then lack part of the cost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runtime-metrics-scraper", daemon=True)

    def __enter__(self) -> RuntimeMetricsScraper:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        response.read()
                    self.scrapes += 1
                except OSError:
                    self.failures += 1


def ran_with(config: StackConfig) -> dict[str, Any]:
    """What the running stack was given, read back from its rendered files and the greeter's log: the proof
    that a variant took effect."""
    conf = (config.conf_dir / "flink-conf.yaml").read_text(encoding="utf-8").splitlines()
    flink = dict(line.split(": ", 1) for line in conf if line and not line.startswith("#"))
    module_text = (config.conf_dir / "module.yaml").read_text(encoding="utf-8")
    module = {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(module_text) if doc}
    endpoint, ingress, egress = module[ENDPOINT_KIND], module[INGRESS_KIND], module[EGRESS_KIND]
    worker = re.search(r"Using worker: (\S+)", config.log_file("greeter").read_text(encoding="utf-8"))
    return {
        "state.backend": flink["state.backend"],
        "parallelism": flink["parallelism.default"],
        "checkpoint_interval": flink["execution.checkpointing.interval"],
        "transport": endpoint.get("transport", {}).get("type"),
        "pool_size": endpoint.get("transport", {}).get("pool_size"),
        "maxNumBatchRequests": endpoint.get("maxNumBatchRequests"),
        "producer": {key: str(value) for key, value in _properties(egress).items()},
        "consumer": {key: str(value) for key, value in _properties(ingress).items()},
        "mode": config.mode,
        "prometheus_reporter": flink.get("metrics.reporter.prom.factory.class"),
        "kafka_heap": config.kafka_heap,
        "runtime_heap": config.runtime_heap,
        "greeter_workers": config.greeter_workers,
        "greeter_worker_class": worker.group(1) if worker else None,
    }


def inherited(stack: LocalStack, variable: str) -> dict[str, str | None]:
    """`variable` in each running process's environment, read from /proc: what the variant's processes got."""
    found: dict[str, str | None] = {}
    for proc in stack.state.procs:
        entries = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        values = [entry.split(b"=", 1)[1].decode() for entry in entries if entry.startswith(variable.encode() + b"=")]
        found[proc.name] = values[0] if values else None
    return found


def brief(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the table shows, from one round."""
    figures: dict[str, Any] = {}
    for names, measured in result["throughput"].items():
        figures[f"greetings_per_s@{names}"] = measured["greetings_per_s_first_to_last"]
        # First to last means little when a backlog commits in one or two transactions (long intervals).
        figures[f"from_sent_per_s@{names}"] = measured["greetings_per_s_from_first_sent"]
        figures[f"cpu_s_per_1000@{names}"] = measured["cpu_seconds_per_1000_greetings_total"]
        figures[f"messages_per_request@{names}"] = measured.get("messages_per_request")
        figures[f"rss_mb@{names}"] = sum(measured["peak_rss_mb"].values())  # the whole stack
    latency = result["latency"]
    figures.update(p50_ms=latency["p50_ms"], p99_ms=latency["p99_ms"])
    figures["cpu_s_per_1000@rate"] = latency["cpu_seconds_per_1000_greetings_total"]
    figures["failed_deliveries"] = result["failed_deliveries"]
    figures["job_failures"] = result["job_failures"]
    figures["correct"] = all(m["correct"] for m in [*result["throughput"].values(), latency])
    return figures


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over rounds (counts: the sum; correctness: all rounds)."""
    figures = [brief(r) for r in rounds]
    summary: dict[str, Any] = {}
    for key in figures[0]:
        values = [f[key] for f in figures if f[key] is not None]
        if key == "correct":
            summary[key] = all(values)
        elif key in ("failed_deliveries", "job_failures"):
            summary[key] = sum(values)
        else:
            summary[key] = round(statistics.median(values), 4) if values else None
    return summary


def ratios(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each variant's medians over the default's, for the rates and costs."""
    base = summaries.get("default")
    if base is None:
        return {}
    keys = [
        key
        for key in base
        if key.startswith(("greetings_per_s@", "from_sent_per_s@", "cpu_s_per_1000@", "rss_mb@", "p99_ms"))
    ]
    return {
        name: {key: round(s[key] / base[key], 2) for key in keys if s.get(key) and base.get(key)}
        for name, s in summaries.items()
    }


def shown(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> list[str]:
    """The medians per variant, with the ratio to the default's, as a Markdown table (BENCHMARKS.md)."""
    names = [str(n) for n in result["names"]]
    # A sweep saved part way holds variants with no round yet.
    summaries = {name: summarise(entry["rounds"]) for name, entry in result["variants"].items() if entry["rounds"]}
    to_default = ratios(summaries)
    header = ["variant", "setting"]
    header += [f"greetings/s, {n} names: first to last / from first sent (x default)" for n in names]
    header += ["p50 / p99 ms", *(f"CPU s/1,000, {n} names" for n in names), "CPU s/1,000 at rate"]
    header += [f"peak RSS MB, {n} names (x default)" for n in names]
    header += ["messages/request", "failed deliveries", "job failures", "exact"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, summary in summaries.items():
        entry, ratio = result["variants"][name], to_default.get(name, {})
        cells = [name, entry["setting"]]
        for n in names:
            first, sent = f"greetings_per_s@{n}", f"from_sent_per_s@{n}"
            rates = f"{shown(summary[first], ',.0f')} / {shown(summary[sent], ',.0f')}"
            cells.append(f"{rates} ({ratio.get(first, '-')} / {ratio.get(sent, '-')})")
        cells.append(f"{shown(summary['p50_ms'], ',.0f')} / {shown(summary['p99_ms'], ',.0f')}")
        cells += [shown(summary[f"cpu_s_per_1000@{n}"], ".3f") for n in names]
        cells.append(shown(summary["cpu_s_per_1000@rate"], ".3f"))
        cells += [f"{shown(summary[f'rss_mb@{n}'], ',.0f')} ({ratio.get(f'rss_mb@{n}', '-')})" for n in names]
        cells.append(" / ".join(str(summary[f"messages_per_request@{n}"]) for n in names))
        cells += [
            str(summary["failed_deliveries"]),
            str(summary["job_failures"]),
            "yes" if summary["correct"] else "NO",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def variants_list(text: str) -> list[Variant]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in BY_NAME]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown}; choose from {', '.join(BY_NAME)}")
    return [BY_NAME[name] for name in chosen]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=variants_list, default=list(VARIANTS), help="default: all")
    parser.add_argument("--names", type=names_list, default=[100, 10_000], help="distinct names per backlog")
    parser.add_argument("--messages", type=int, default=100_000, help="records per throughput backlog")
    parser.add_argument("--warmup", type=int, default=30_000, help="records sent and awaited before measuring")
    parser.add_argument("--rate", type=float, default=1000, help="records/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=15)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (order reversed every other round)")
    parser.add_argument("--mode", choices=MODES, default="cluster", help="how the runtime runs (default: cluster)")
    parser.add_argument("--out", type=Path, help="the JSON result (default bench/results/tuning-<time>.json)")
    parser.add_argument("--table", type=Path, metavar="RESULT", help="only print RESULT's table (Markdown)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.table:
        print("\n".join(markdown(json.loads(args.table.read_text()))))
        return 0
    out = args.out or RESULTS / f"tuning-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["scripts/bench-tuning", *(argv if argv is not None else sys.argv[1:])]),
        "names": args.names,
        "messages": args.messages,
        "warmup_messages": args.warmup,
        "rate": args.rate,
        "mode": args.mode,
        "latency_seconds": args.latency_seconds,
        "variants": {v.name: {"setting": v.setting, "rounds": []} for v in args.variants},
    }
    for index in range(args.repeat):
        for variant in args.variants if index % 2 == 0 else reversed(args.variants):
            result["variants"][variant.name]["rounds"].append(run_variant(variant, args))
            out.write_text(json.dumps(result, indent=2))  # kept after every run: a long sweep that fails keeps the rest
    summaries = {name: summarise(entry["rounds"]) for name, entry in result["variants"].items()}
    for name, summary in summaries.items():
        result["variants"][name]["summary"] = summary  # markdown() recomputes them from the rounds
    result["to_default"] = ratios(summaries)
    result["correct"] = all(summary["correct"] for summary in summaries.values())
    out.write_text(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    say(f"results: {out}")
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(cli(main))
