"""End-to-end benchmark of the local pipeline: start-up, throughput on a backlog, latency at a fixed rate.

Starts its own stack (free ports, temporary run folder), then:
1. `up` time: from the call to the job RUNNING (jars already fetched);
2. throughput, after a warm-up backlog (--warmup): produce a backlog of --messages records over --names
   names as fast as Kafka takes them and count committed greetings (read_committed): first to last
   greeting, and from the first record sent;
   CPU seconds per 1,000 greetings and peak RSS of each process; messages per HTTP request (greeter metrics);
   every name's greetings verified 1..k;
3. latency: --rate records/s for --latency-seconds over fresh names; produce-to-committed-visible latency.
Usage: scripts/bench-pipeline [--names 100] [--messages 300000] [--rate 1000] ...  (results: bench/results/)
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

from bench.procstats import cpu_seconds, peak_rss_mb
from consumer.verify import verify
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse
from stack.config import Ports, StackConfig
from stack.local import LocalStack

RESULTS = Path(__file__).resolve().parent / "results"


class GreetingReader(threading.Thread):
    """Reads committed greetings from the end of the topic, noting when each became visible."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe(["greetings"])
        self.seen: list[tuple[float, str, str]] = []  # (time visible, name, greeting)
        self.stopping = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            batch = self.consumer.consume(10_000, 0.2)
            if self.consumer.assignment():
                self.assigned.set()
            now = time.monotonic()
            for message in batch:
                if message.error() is None:
                    response = GreetResponse.FromString(message.value())
                    self.seen.append((now, response.name, response.greeting))
        self.consumer.close()

    def wait_for(self, count: int, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while len(self.seen) < count and time.monotonic() < end:
            time.sleep(0.05)


def producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def send(kafka: Producer, name: str) -> None:
    while True:
        try:
            kafka.produce("names", key=name.encode(), value=GreetRequest(name=name).SerializeToString())
            return
        except BufferError:
            kafka.poll(0.05)


def greeter_batches(stack: LocalStack) -> tuple[float, float]:
    text = urllib.request.urlopen(f"{stack.config.greeter_url}/metrics", timeout=10).read().decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("greeter_invocations_per_request_")
    )
    return float(values["greeter_invocations_per_request_sum"]), float(values["greeter_invocations_per_request_count"])


def cpu_by_process(stack: LocalStack) -> dict[str, float]:
    return {proc.name: cpu_seconds(proc.pid) for proc in stack.state.procs}


def throughput(stack: LocalStack, names: int, messages: int, label: str = "tp") -> dict:
    bootstrap = stack.config.bootstrap_servers
    pool = [f"{label}-{i}-{uuid.uuid4().hex[:6]}" for i in range(names)]
    reader = GreetingReader(bootstrap)
    reader.start()
    reader.assigned.wait(30)
    cpu_before, batches_before = cpu_by_process(stack), greeter_batches(stack)
    started = time.monotonic()
    kafka = producer(bootstrap)
    for index in range(messages):
        send(kafka, pool[index % names])
        if index % 10_000 == 0:
            kafka.poll(0)
    kafka.flush(120)
    produced = time.monotonic()
    reader.wait_for(messages, deadline_s=600)
    time.sleep(3 * stack.config.checkpoint_interval_ms / 1000)  # late duplicates would show up by now
    reader.stopping.set()
    reader.join()
    cpu_after, batches_after = cpu_by_process(stack), greeter_batches(stack)
    seen = reader.seen
    report = verify(((name, greeting) for _t, name, greeting in seen), dict.fromkeys(pool, messages // names))
    first, last = seen[0][0], seen[-1][0]
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    invocations = batches_after[0] - batches_before[0]
    requests = batches_after[1] - batches_before[1]
    return {
        "names": names,
        "messages": messages,
        "greetings": len(seen),
        "correct": report.ok,
        "produce_seconds": round(produced - started, 2),
        "greetings_per_s_first_to_last": round(len(seen) / (last - first)),
        "greetings_per_s_from_first_sent": round(len(seen) / (last - started)),
        "cpu_seconds_per_1000_greetings": {k: round(v / len(seen) * 1000, 4) for k, v in cpu.items()},
        "cpu_share": {k: round(v / sum(cpu.values()), 3) for k, v in cpu.items()},
        "messages_per_request": round(invocations / requests, 1) if requests else None,
    }


def latency(stack: LocalStack, names: int, rate: float, seconds: float) -> dict:
    bootstrap = stack.config.bootstrap_servers
    pool = [f"lat-{i}-{uuid.uuid4().hex[:6]}" for i in range(names)]
    reader = GreetingReader(bootstrap)
    reader.start()
    reader.assigned.wait(30)
    kafka = producer(bootstrap)
    sent_at: dict[tuple[str, int], float] = {}
    counts = dict.fromkeys(pool, 0)
    total = int(rate * seconds)
    started = time.monotonic()
    for index in range(total):
        pause = started + index / rate - time.monotonic()
        if pause > 0:
            kafka.poll(pause)
        name = pool[index % names]
        counts[name] += 1
        sent_at[(name, counts[name])] = time.monotonic()
        send(kafka, name)
        kafka.poll(0)
    kafka.flush(60)
    reader.wait_for(total, deadline_s=120)
    reader.stopping.set()
    reader.join()
    numbers: dict[str, int] = dict.fromkeys(pool, 0)
    delays = []
    for visible, name, _greeting in reader.seen:
        numbers[name] += 1
        delays.append((visible - sent_at[(name, numbers[name])]) * 1000)
    delays.sort()
    return {
        "rate": rate,
        "seconds": seconds,
        "greetings": len(delays),
        "p50_ms": round(statistics.median(delays)),
        "p99_ms": round(delays[int(len(delays) * 0.99) - 1]),
        "max_ms": round(delays[-1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--warmup", type=int, default=100_000, help="records sent and awaited before measuring")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--greeter-workers", type=int, default=2)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=2000)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as run_dir:
        config = StackConfig(
            run_dir=Path(run_dir),
            ports=Ports.free(),
            greeter_workers=args.greeter_workers,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
        )
        stack = LocalStack(config, report=lambda line: print(f"[stack] {line}", file=sys.stderr))
        try:
            started = time.monotonic()
            stack.up(fresh=True)
            result: dict = {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "up_seconds": round(time.monotonic() - started, 1),
                "greeter_workers": args.greeter_workers,
                "checkpoint_interval_ms": args.checkpoint_interval_ms,
            }
            print(json.dumps(result), file=sys.stderr)
            if args.warmup:  # the JVMs compile their hot paths during the first tens of thousands of records
                result["warmup"] = throughput(stack, args.names, args.warmup, "warmup")
                print(json.dumps(result["warmup"]), file=sys.stderr)
            result["throughput"] = throughput(stack, args.names, args.messages)
            print(json.dumps(result["throughput"]), file=sys.stderr)
            result["latency"] = latency(stack, args.names, args.rate, args.latency_seconds)
            result["peak_rss_mb"] = {p.name: round(peak_rss_mb(p.pid)) for p in stack.state.procs}
            result["restarts"] = stack.restart_count()
        finally:
            stack.down()
    out = RESULTS / f"pipeline-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["throughput"]["correct"] and result["latency"]["greetings"] else 1


if __name__ == "__main__":
    sys.exit(main())
