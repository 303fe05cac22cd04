"""The Quix Streams peer (bench/peers/quix_app.py) as a benchmark process: its topics on the stack's broker, its
start (ready once its consumer group holds every input partition) and its stop, by recorded PID.

It reads its own input topic, which the benchmark fills with the same records, in the same order, as it sends
the StateFun pipeline's `names`: the runtime consumes `names` from the moment the stack is up, so a topic both
read would put the peer's load on the runtime too (and a fixed-rate run for one on the other).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaException

from bench.procstats import dir_bytes
from stack import kafka, procs
from stack.config import StackConfig

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / "bench" / ".venvs" / "quix" / "bin" / "python"
APP = ROOT / "bench" / "peers" / "quix_app.py"
REQUIREMENTS = ROOT / "bench" / "requirements-quix.txt"
NAME = "quix"
INPUT_TOPIC = "names-quix"
OUTPUT_TOPIC = "greetings-quix"
GROUP = "greeter-quix"


class QuixPeer:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.commit_interval_s = config.checkpoint_interval_ms / 1000  # the egress commits on each checkpoint
        self.state_dir = config.run_dir / "quix-state"
        self.proc: procs.Proc | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the Quix peer is not running")
        return self.proc.pid

    def describe(self) -> dict[str, Any]:
        pins = [line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("quixstreams==")]
        return {
            "package": pins[0] if pins else None,
            "processing_guarantee": "exactly-once",
            "commit_interval_s": self.commit_interval_s,
            "input_topic": INPUT_TOPIC,
            "output_topic": OUTPUT_TOPIC,
        }

    def start(self, timeout_s: float = 120) -> float:
        """Start it with empty state (as the stack starts `--fresh`) and wait until it holds every input
        partition; the seconds that took."""
        if not PYTHON.exists():
            raise RuntimeError(f"no {PYTHON}: build the peer's virtualenv with `scripts/bench-venv quix`")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        started = time.monotonic()
        argv = [
            str(PYTHON),
            str(APP),
            "--broker",
            self.config.bootstrap_servers,
            "--input",
            INPUT_TOPIC,
            "--output",
            OUTPUT_TOPIC,
            "--group",
            GROUP,
            "--commit-interval",
            str(self.commit_interval_s),
            "--state-dir",
            str(self.state_dir),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = procs.spawn(NAME, argv, self.config.log_file(NAME), env=env, cwd=self.config.run_dir)
        deadline = started + timeout_s
        while (waiting := self._not_ready()) is not None:
            if not procs.is_running(self.proc):
                raise RuntimeError(f"the Quix peer exited ({procs.exit_code(self.proc)}): see {self.proc.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Quix peer not ready after {timeout_s:.0f} s ({waiting}): see {self.proc.log}")
            time.sleep(0.2)
        return time.monotonic() - started

    def _not_ready(self) -> str | None:
        client = kafka.admin(self.config)
        try:
            group = client.describe_consumer_groups([GROUP], request_timeout=5)[GROUP].result()
        except KafkaException as error:
            return f"group {GROUP}: {error}"
        if group.state != ConsumerGroupState.STABLE:
            return f"group {GROUP} is {group.state}"
        held = {
            tp.partition
            for member in group.members
            for tp in member.assignment.topic_partitions
            if tp.topic == INPUT_TOPIC
        }
        if len(held) < self.config.partitions:
            return f"{len(held)} of {self.config.partitions} partitions of {INPUT_TOPIC} assigned"
        return None

    def stop(self) -> str:
        """SIGTERM (Quix stops its loop and commits), SIGKILL after the stack's stop timeout."""
        if self.proc is None:
            return "not started"
        result = procs.stop(self.proc, self.config.stop_timeout_s)
        self.proc = None
        return result

    def state_bytes(self) -> dict[str, int]:
        """Its RocksDB on disk, and its changelog topics in the broker's log folder."""
        changelogs = list(self.config.kafka_data_dir.glob("changelog__*"))
        return {"rocksdb": dir_bytes(self.state_dir), "changelog": dir_bytes(*changelogs)}
