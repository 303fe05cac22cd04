"""The physical limits beside "where the time goes": the least one greeting can cost on this machine.

1. Protocol floor: one process pinned to one core, no HTTP, no SDK: parse a one-message ToFunction body
   (bench/endpoint.py's), decode the GreetRequest and the seen_count state, build the GreetResponse, its
   KafkaProducerRecord egress message and the state mutation, serialize the FromFunction reply, with the
   generated classes on upb. Timed beside the greeter's Dispatcher (bench/inprocess.py's `dispatcher`:
   handle_async awaited on a running uvloop) on the same body, rounds interleaved; both replies must say
   the same, or the floor would not be doing the same job.
2. Kafka: the stack's broker alone (temporary run folder, free ports) and Kafka's own ProducerPerformance and
   ConsumerPerformance, on topics with the stack's partitions, for a names record and a greetings record:
   produce idempotent with acks=all, produce in transactions committed every checkpoint interval, and consume
   each topic back under read_committed. Not pinned: the broker and the tool share the machine's cores.
Usage: scripts/bench-limits [--records N] [--seconds S] [--rounds R]   (results: bench/results/limits-*.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import google.protobuf
import uvloop
from google.protobuf.internal import api_implementation
from statefun.kafka_egress_pb2 import KafkaProducerRecord
from statefun.request_reply_pb2 import FromFunction, ToFunction, TypedValue

from bench.endpoint import RESULTS, SERVER_CPU, write_bodies
from bench.inprocess import AsyncHandle, async_target, us_per_await, us_per_call
from bench.pipeline import cli, say
from generator.names import generate_names
from generator.produce import encode_records
from greeter.config.wiring import EGRESS_ID, GREETINGS_TOPIC, SEEN_COUNT_STATE
from greeter.function.greeting import compute_greeting
from greeter.function.types import GREET_REQUEST_TYPE, SEEN_COUNT_TYPE
from greeter.protocol.dispatch import Reply
from greeter.protocol.messages import KAFKA_RECORD_TYPENAME, kafka_records
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse, SeenCount
from stack import kafka, procs
from stack.config import JVM_DIR, KAFKA_VERSION, Ports, StackConfig
from stack.fetch import check_prerequisites, fetch, is_fresh
from stack.readiness import wait_until
from stack.render import write_logging_configs

EGRESS_NAMESPACE, _, EGRESS_TYPE = EGRESS_ID.rpartition("/")
MODIFY = FromFunction.PersistedValueMutation.MODIFY
PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERFORMANCE = "org.apache.kafka.tools.ConsumerPerformance"
TOOL_HEAP = "-Xmx256m"  # kafka-run-class's default heap for the tools
# Kafka's config/tools-log4j.properties: warnings to stderr, so stdout holds only the tools' results.
TOOLS_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
"""
# The egress's producer and the generator: every write acknowledged by all replicas, no duplicates on retry.
PRODUCER_PROPS = ("acks=all", "enable.idempotence=true")
# Most greetings of a long run are the "n-th time" form (counts from 4 on), the longest.
SEEN = 4
# The start of ProducerPerformance's summary line; what follows, its latencies, is queueing in the client's buffer
# under an unthrottled backlog, not the broker's latency.
PRODUCED = re.compile(r"(?P<records>\d+) records sent, (?P<per_s>[\d.]+) records/sec")


def floor_reply(body: bytes) -> bytes:
    """The protocol work any Python remote function must do for the greeter's job, and nothing else."""
    batch = ToFunction.FromString(body).invocation
    seen = 0
    for state in batch.state:
        if state.state_name == SEEN_COUNT_STATE and state.state_value.has_value:
            seen = SeenCount.FromString(state.state_value.value).seen
    reply = FromFunction()
    result = reply.invocation_result
    for invocation in batch.invocations:
        argument = invocation.argument
        if argument.typename != GREET_REQUEST_TYPE.typename:
            raise ValueError(f"argument is {argument.typename}")
        name = GreetRequest.FromString(argument.value).name
        seen += 1
        response = GreetResponse(name=name, greeting=compute_greeting(name, seen))
        record = KafkaProducerRecord(topic=GREETINGS_TOPIC, key=name, value_bytes=response.SerializeToString())
        wrapped = TypedValue(typename=KAFKA_RECORD_TYPENAME, has_value=True, value=record.SerializeToString())
        result.outgoing_egresses.add(egress_namespace=EGRESS_NAMESPACE, egress_type=EGRESS_TYPE, argument=wrapped)
    state_value = TypedValue(
        typename=SEEN_COUNT_TYPE.typename, has_value=True, value=SeenCount(seen=seen).SerializeToString()
    )
    result.state_mutations.add(state_name=SEEN_COUNT_STATE, mutation_type=MODIFY, state_value=state_value)
    serialized: bytes = reply.SerializeToString()
    return serialized


def dispatcher_reply(handle: AsyncHandle, body: bytes) -> bytes:
    reply: object = uvloop.run(handle(body))
    assert isinstance(reply, Reply), reply
    return reply.body


def reply_says(body: bytes) -> dict[str, Any]:
    """What a reply tells the runtime: the greetings and the state written."""
    reply = FromFunction.FromString(body)
    mutations = reply.invocation_result.state_mutations
    return {
        "greetings": [GreetResponse.FromString(record.value).greeting for record in kafka_records(reply)],
        "seen_count": [SeenCount.FromString(m.state_value.value).seen for m in mutations],
    }


@contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """This process on one core; the previous set restored after, or the JVMs started later inherit the pin."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def protobuf_limits(body: bytes, seconds: float, rounds: int) -> dict[str, Any]:
    backend = api_implementation.Type()
    if backend != "upb":
        raise RuntimeError(f"protobuf runs on its {backend} backend, not upb: the floor would not be the greeter's")
    dispatcher = async_target("dispatcher")
    floor, ours = floor_reply(body), dispatcher_reply(dispatcher, body)
    if reply_says(floor) != reply_says(ours):
        raise RuntimeError(f"the floor replies {reply_says(floor)}, the Dispatcher {reply_says(ours)}")
    samples: dict[str, list[float]] = {"floor": [], "dispatcher": []}
    with pinned(SERVER_CPU):
        for _ in range(rounds):  # interleaved, so drift of the host hits both alike
            samples["floor"].append(us_per_call(floor_reply, body, seconds))
            samples["dispatcher"].append(uvloop.run(us_per_await(dispatcher, body, seconds)))
    floor_us, dispatcher_us = statistics.median(samples["floor"]), statistics.median(samples["dispatcher"])
    return {
        "cpu": SERVER_CPU,
        "request_bytes": len(body),
        "reply_bytes": len(floor),
        "floor_reply": reply_says(floor),
        "dispatcher_reply": reply_says(ours),
        "same_reply_bytes": floor == ours,
        "seconds_per_round": seconds,
        "rounds_us": {name: [round(us, 2) for us in values] for name, values in samples.items()},
        "floor_us": round(floor_us, 2),
        "dispatcher_us": round(dispatcher_us, 2),
        "dispatcher_over_floor_us": round(dispatcher_us - floor_us, 2),
    }


@contextmanager
def broker(java: str, run_dir: Path) -> Iterator[StackConfig]:
    """The stack's broker alone, set up as LocalStack sets it up (LocalStack starts only the whole stack);
    stopped by PID."""
    config = StackConfig(run_dir=run_dir, ports=Ports.free())
    write_logging_configs(config)
    kafka.write_properties(config)
    kafka.format_storage(java, config)
    proc = procs.spawn("kafka", kafka.argv(java, config), config.log_file("kafka"), cwd=run_dir)
    try:
        wait_until(
            "kafka",
            lambda: kafka.broker_ready(config),
            timeout=config.start_timeout_s,
            log=Path(proc.log),
            alive=lambda: procs.is_running(proc),
        )
        yield config
    finally:
        procs.stop(proc, config.stop_timeout_s)


def record_sizes() -> dict[str, int]:
    """Key + value bytes of the pipeline's records, averaged over the generator's default names."""
    names = generate_names(1000, seed=0)
    requests = [len(key) + len(value) for key, value in encode_records(names)]
    greetings = [
        len(name.encode()) + GreetResponse(name=name, greeting=compute_greeting(name, SEEN)).ByteSize()
        for name in names
    ]
    return {"names": round(statistics.mean(requests)), "greetings": round(statistics.mean(greetings))}


def tool(java: str, config: StackConfig, main_class: str, arguments: list[str]) -> tuple[list[str], str]:
    """Run one of Kafka's tools on the broker's classpath; the command (without the JVM's part) and stdout."""
    command = [main_class, *arguments]
    log4j = config.conf_dir / "tools-log4j.properties"
    log4j.write_text(TOOLS_LOG4J)
    jvm = [java, TOOL_HEAP, f"-Dlog4j.configuration=file:{log4j}", "-cp", kafka.classpath(config)]
    output = subprocess.run([*jvm, *command], capture_output=True, text=True, check=True).stdout
    return command, output


def produce(java: str, config: StackConfig, topic: str, size: int, records: int, transactional: bool) -> dict[str, Any]:
    arguments = ["--topic", topic, "--num-records", str(records), "--record-size", str(size), "--throughput", "-1"]
    arguments += ["--producer-props", f"bootstrap.servers={config.bootstrap_servers}", *PRODUCER_PROPS]
    if transactional:
        arguments += ["--transactional-id", topic]
        arguments += ["--transaction-duration-ms", str(config.checkpoint_interval_ms)]
    command, output = tool(java, config, PRODUCER_PERFORMANCE, arguments)
    found = PRODUCED.search(output)
    if found is None:
        raise RuntimeError(f"no summary line in ProducerPerformance's output:\n{output[-2000:]}")
    per_s = float(found["per_s"])
    return {
        "topic": topic,
        "record_bytes": size,
        "transactional": transactional,
        "records": int(found["records"]),
        "records_per_s": round(per_s),
        "mb_per_s": round(per_s * size / 1e6, 3),
        "command": command,
    }


def consume(java: str, config: StackConfig, topic: str, size: int, records: int) -> dict[str, Any]:
    properties = config.conf_dir / "read-committed.properties"
    properties.write_text("isolation.level=read_committed\n")
    arguments = ["--bootstrap-server", config.bootstrap_servers, "--topic", topic, "--messages", str(records)]
    arguments += ["--consumer.config", str(properties), "--group", topic]
    command, output = tool(java, config, CONSUMER_PERFORMANCE, arguments)
    lines = output.splitlines()
    header = max((i for i, line in enumerate(lines) if line.startswith("start.time")), default=None)
    if header is None or header + 1 >= len(lines):
        raise RuntimeError(f"no result in ConsumerPerformance's output:\n{output[-2000:]}")
    row = dict(zip(csv_fields(lines[header]), csv_fields(lines[header + 1]), strict=True))
    per_s = float(row["fetch.nMsg.sec"])
    return {
        "topic": topic,
        "record_bytes": size,
        "isolation": "read_committed",
        "records": int(row["data.consumed.in.nMsg"]),
        "records_per_s": round(per_s),
        "mb_per_s": round(per_s * size / 1e6, 3),
        # ConsumerPerformance's own rate counts the group join too; records_per_s leaves it out.
        "records_per_s_with_group_join": round(float(row["nMsg.sec"])),
        "group_join_ms": int(row["rebalance.time.ms"]),
        "command": command,
    }


def csv_fields(line: str) -> list[str]:
    return [field.strip() for field in line.split(",")]


def kafka_limits(config: StackConfig, java: str, records: int) -> dict[str, Any]:
    sizes = record_sizes()
    produced, consumed = [], []
    for kind, size in sizes.items():
        for transactional in (False, True):
            topic = f"limits-{kind}-{'transactional' if transactional else 'idempotent'}"
            kafka.ensure_topics(config, [topic])
            produced.append(produce(java, config, topic, size, records, transactional))
            say(f"[limits] produce {brief(produced[-1])}")
            consumed.append(consume(java, config, topic, size, records))
            say(f"[limits] consume {brief(consumed[-1])}")
    return {
        "version": KAFKA_VERSION,
        "bootstrap_servers": config.bootstrap_servers,
        "partitions": config.partitions,
        "record_bytes": sizes,
        # ProducerPerformance sends no key, so its records carry the key's bytes in the value, and its sticky
        # partitioner fills one partition's batch at a time where the pipeline's keys hash each record to its own.
        "keys": "none: record_bytes = the key + value bytes of the pipeline's records, all in the value",
        "producer_props": list(PRODUCER_PROPS),
        "transaction_ms": config.checkpoint_interval_ms,
        "produce": produced,
        "consume": consumed,
    }


def brief(measure: dict[str, Any]) -> str:
    rate = f"{measure['records_per_s']:,}/s, {measure['mb_per_s']} MB/s"
    return f"{measure['topic']} ({measure['record_bytes']} B records): {measure['records']:,} records, {rate}"


def machine(java: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    version = subprocess.run([java, "-version"], capture_output=True, text=True, check=True).stderr.splitlines()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1) if model else platform.processor(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "protobuf": google.protobuf.__version__,
        "protobuf_backend": api_implementation.Type(),
        "java": version,
        "kafka": KAFKA_VERSION,
    }


def floor_line(protobuf: dict[str, Any]) -> str:
    return (
        f"protocol floor {protobuf['floor_us']} us per one-message request, "
        f"our Dispatcher {protobuf['dispatcher_us']} us (one core, upb)"
    )


def summary(result: dict[str, Any]) -> list[str]:
    produced = [f"Kafka produce (acks=all) {brief(measure)}" for measure in result["kafka"]["produce"]]
    consumed = [f"Kafka consume (read_committed) {brief(measure)}" for measure in result["kafka"]["consume"]]
    return [floor_line(result["protobuf"]), *produced, *consumed]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000, help="records per Kafka produce and consume run")
    parser.add_argument("--seconds", type=float, default=1.0, help="protobuf timing per round and handler")
    parser.add_argument("--rounds", type=int, default=5, help="protobuf rounds; the median is reported")
    parser.add_argument("--out", type=Path, help="result file (default: bench/results/limits-<time>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or RESULTS / f"limits-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    java = check_prerequisites(need_maven=not is_fresh(JVM_DIR))
    fetch(StackConfig())
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": ["scripts/bench-limits", *(sys.argv[1:] if argv is None else argv)],
        "machine": machine(java),
    }
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as run_dir:
        result["protobuf"] = protobuf_limits(write_bodies(Path(run_dir))[1].read_bytes(), args.seconds, args.rounds)
        say(f"[limits] {floor_line(result['protobuf'])}")
        with broker(java, Path(run_dir)) as config:
            result["kafka"] = kafka_limits(config, java, args.records)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    for line in [*summary(result), f"results: {out}"]:
        say(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
