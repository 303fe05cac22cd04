"""Where the TaskManager's time goes: Java Flight Recorder (in the JDK) on the cluster's TaskManager.

Starts a cluster-mode stack (free ports, a temporary run folder) and loads it one of two ways:
- `--records N` (default): N requests, each with a name never seen before, produced up front; the recording
  runs while the backlog drains (the many-keys case: one message per request, state read and written per name);
- `--rate R`: R requests/s over a pool of `--names` names, produced throughout the recording.
`jcmd <pid> JFR.start` records --seconds on the running TaskManager with the `profile` settings, and `jfr print
--json` reads the execution samples back. Prints each component's share of the samples, found from the innermost
frame that belongs to a known library (so a HashMap lookup counts for the code that made it), the same by
thread, and the time the JVM spent in GC pauses. The recording stays in bench/results/.
Usage: scripts/bench-profile taskmanager [--records 200000 | --rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.load import name_pool, producer, send
from greeter.config.wiring import NAMES_TOPIC
from stack.config import Ports, StackConfig
from stack.local import LocalStack

RESULTS = Path(__file__).resolve().parent / "results"

# (component, pattern on a frame's class): the innermost frame that matches names the sample's component.
COMPONENTS = (
    ("RocksDB (JNI and Flink's RocksDB state backend)", r"^org\.rocksdb\.|\.contrib\.streaming\.state\."),
    ("protobuf", r"\.protobuf\."),
    ("Kafka client: consumer (the ingress)", r"^org\.apache\.kafka\.clients\.consumer\."),
    ("Kafka client: producer (the egress)", r"^org\.apache\.kafka\.clients\.producer\."),
    ("Kafka client: network, records, compression", r"^org\.apache\.kafka\."),
    ("HTTP to the greeter (StateFun's transport, Netty, OkHttp)", r"nettyclient|\.netty\.|okhttp3?\.|okio\."),
    ("StateFun: functions, batching, state, routing", r"^org\.apache\.flink\.statefun\."),
    ("checkpointing", r"\.runtime\.checkpoint\.|\.runtime\.state\.|Snapshot"),
    ("Flink: serialization, network stack", r"\.typeutils\.|\.runtime\.io\.|\.runtime\.io\.network\."),
    ("Flink: mailbox, operators, tasks", r"^org\.apache\.flink\.streaming\.|^org\.apache\.flink\.runtime\."),
    ("Flink: RPC, metrics, other", r"^org\.apache\.flink\.|^akka\.|^scala\."),
)
# Threads by what they serve (first match): the task threads run the operators, the rest serve them.
THREADS = (
    ("Kafka consumer thread (ingress fetches)", r"Kafka Fetcher"),
    ("the ingress's source thread (records to messages)", r"^Legacy Source Thread"),
    ("Kafka producer I/O threads (egress)", r"kafka-producer-network-thread"),
    ("the task threads (operators, state, mailbox)", r"\(\d+/\d+\)#\d+$"),
    ("HTTP client threads (calls to the greeter)", r"netty-http|EventLoop|OkHttp"),
    ("RPC and metrics (Akka)", r"akka|metrics"),
    ("checkpoint threads (async snapshots, uploads)", r"AsyncOperations|checkpoint|Checkpoint|rocksdb|RocksDB"),
)


def frames(sample: dict[str, Any]) -> list[str]:
    """A sample's frames as `class.method`, innermost first."""
    trace = sample["values"].get("stackTrace") or {}
    return [
        f"{frame['method']['type']['name'].replace('/', '.')}.{frame['method']['name']}"
        for frame in trace.get("frames", [])
    ]


def component(stack: Iterable[str]) -> str:
    for frame in stack:
        for name, pattern in COMPONENTS:
            if re.search(pattern, frame):
                return name
    return "the JDK only (threads, locks, collections)"


def thread_group(sample: dict[str, Any]) -> str:
    thread = (sample["values"].get("sampledThread") or {}).get("javaName") or ""
    for name, pattern in THREADS:
        if re.search(pattern, thread):
            return name
    return "other threads"


def shares(counts: Counter[str]) -> list[tuple[str, float]]:
    total = sum(counts.values()) or 1
    return [(name, 100 * count / total) for name, count in counts.most_common()]


def events(recording: Path, event: str) -> list[dict[str, Any]]:
    printed = subprocess.run(
        ["jfr", "print", "--json", "--stack-depth", "64", "--events", event, str(recording)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    found: list[dict[str, Any]] = json.loads(printed.stdout)["recording"]["events"]
    return found


def duration_ms(value: str) -> float:
    """A JFR duration as `jfr print --json` writes it (ISO-8601, e.g. PT0.012345S) in ms."""
    match = re.fullmatch(r"PT(?:(\d+)M)?([\d.]+)S", value)
    return 0.0 if match is None else (int(match.group(1) or 0) * 60 + float(match.group(2))) * 1000


@contextmanager
def steady(bootstrap: str, rate: int, names: int) -> Iterator[None]:
    """Produce `rate` requests/s round-robin over `names` names until the block ends."""
    stop = threading.Event()
    pool = name_pool(f"tm-profile-{uuid.uuid4().hex[:6]}", names)

    def run() -> None:
        kafka, sent, start = producer(bootstrap), 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate)
            for _ in range(due - sent):
                send(kafka, NAMES_TOPIC, pool[sent % len(pool)])
                sent += 1
            kafka.poll(0)
            time.sleep(0.005)
        kafka.flush(30)

    thread = threading.Thread(target=run, name="steady producer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def record(stack: LocalStack, seconds: int, out: Path) -> None:
    pid = str(stack.state.proc("taskmanager").pid)
    start = ["jcmd", pid, "JFR.start", "name=tm-profile", "settings=profile", f"duration={seconds}s", f"filename={out}"]
    subprocess.run(start, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + seconds + 60
    while not (out.exists() and out.stat().st_size > 0) or _recording(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no recording in {out} {seconds + 60} s after JFR.start")
        time.sleep(1)


def _recording(pid: str) -> bool:
    listed = subprocess.run(["jcmd", pid, "JFR.check"], capture_output=True, text=True, timeout=60).stdout
    return "tm-profile" in listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--records", type=int, default=200_000, help="a backlog of this many new names")
    load.add_argument("--rate", type=int, help="requests/s, produced throughout instead of a backlog")
    parser.add_argument("--names", type=int, default=10_000, help="the pool --rate cycles through")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"taskmanager-{uuid.uuid4().hex[:6]}.jfr"
    with tempfile.TemporaryDirectory(prefix="bench-profile-tm-") as run_dir:
        config = StackConfig(run_dir=Path(run_dir), ports=Ports.free(), seen_count_ttl=0, mode="cluster")
        stack = LocalStack(config, report=print)
        try:
            stack.up(fresh=True)
            if args.rate:
                with steady(config.bootstrap_servers, args.rate, args.names):
                    time.sleep(5)  # past the first checkpoints and the HTTP pool's warm-up
                    record(stack, args.seconds, out)
            else:
                kafka, tag = producer(config.bootstrap_servers), uuid.uuid4().hex[:6]
                for index in range(args.records):
                    send(kafka, NAMES_TOPIC, f"tm-profile-{tag}-{index}")
                kafka.flush(60)
                record(stack, args.seconds, out)
        finally:
            stack.down()
    samples = events(out, "jdk.ExecutionSample")
    print(f"{len(samples)} execution samples in {args.seconds} s")
    print("by component (innermost known frame):")
    for name, share in shares(Counter(component(frames(sample)) for sample in samples)):
        print(f"  {share:5.1f} %  {name}")
    print("by thread:")
    for name, share in shares(Counter(thread_group(sample) for sample in samples)):
        print(f"  {share:5.1f} %  {name}")
    # JNI code (RocksDB's reads and writes) is not in execution samples; JFR samples threads in native methods
    # apart, every 20 ms, waiting ones included, so only frames in org.rocksdb count, as a lower bound of its time.
    native = events(out, "jdk.NativeMethodSample")
    rocksdb = sum(1 for sample in native if any(frame.startswith("org.rocksdb.") for frame in frames(sample)[:1]))
    print(f"RocksDB native-method samples: {rocksdb} (every 20 ms per thread; execution samples: every 10 ms)")
    pauses = sum(duration_ms(event["values"]["duration"]) for event in events(out, "jdk.GCPhasePause"))
    print(f"GC pauses: {pauses:.0f} ms in {args.seconds} s ({100 * pauses / (args.seconds * 1000):.1f} % of the time)")
    print(f"recording: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
