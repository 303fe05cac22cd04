"""The fault schedule and what it measures: produce in thirds, strike after checkpoints, time the recovery.

A `Watcher` thread reads `greetings` under read_committed from the start and stamps each record with its
arrival time and greeting number. Two figures per fault:
- recovery time: the fault to the first committed greeting answering a request produced after the fault
  (its number is above the rounds produced when it struck): work the pipeline did after it recovered;
- first commit: the fault to the first greeting committed after it, whatever its request. A fault first asks
  the broker for each partition's last stable offset (a read_committed consumer's watermark query answers it),
  then strikes; a greeting at or past that offset committed after the fault. This can be well under a second
  when the checkpoint that commits the work done before the fault still completes (the greeter's outages).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from confluent_kafka import Consumer, TopicPartition

from consumer.verify import Kind, Report, greeting_number
from protos.generated.greeter_pb2 import GreetResponse
from stack import procs
from stack.kafka_auth import CONSUMER, GENERATOR, client_flags
from stack.local import LocalStack
from tests.support.kafka_clients import KafkaTarget, as_principal, client_settings
from tests.support.waiting import wait_for

from ..e2e.kafka_io import count_partitions, produce, read_greetings, requests, unique_names

NAMES = 50
ROUNDS = 40  # messages per name
GREETINGS = "greetings"


def _consumer(kafka: KafkaTarget) -> Consumer:
    return Consumer(
        client_settings(
            kafka,
            **{
                "group.id": f"faults-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "log_level": 2,  # no connection errors on the console: the broker is killed on purpose
            },
        )
    )


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the watcher received it
    partition: int
    offset: int
    number: int  # which greeting of its name (1, 2, ...); 0 if unreadable


class Watcher:
    """Committed greetings of `keys` as they arrive (partitions assigned directly: no group, no rebalance)."""

    def __init__(self, kafka: KafkaTarget, partitions: int, keys: set[bytes]) -> None:
        self._consumer = _consumer(kafka)
        self._consumer.assign([TopicPartition(GREETINGS, p, 0) for p in range(partitions)])
        self._keys = keys
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greetings-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                message = self._consumer.poll(0.1)
                if message is None or message.error() is not None:  # transport errors while Kafka is down
                    continue
                if (message.key() or b"") in self._keys:
                    with self._lock:
                        response = GreetResponse.FromString(message.value() or b"")
                        number = greeting_number(response.name, response.greeting) or 0
                        seen = Seen(time.monotonic(), message.partition() or 0, message.offset() or 0, number)
                        self._seen.append(seen)
        finally:
            self._consumer.close()

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def count(self) -> int:
        with self._lock:
            return len(self._seen)

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)


def _ends(consumer: Consumer, partitions: int) -> dict[int, int]:
    """Each partition's end as `consumer` sees it: the last stable offset under read_committed, the high
    watermark under read_uncommitted."""
    return {
        p: consumer.get_watermark_offsets(TopicPartition(GREETINGS, p), timeout=10, cached=False)[1]
        for p in range(partitions)
    }


def stable_offsets(kafka: KafkaTarget, partitions: int) -> dict[int, int]:
    """Each partition's last stable offset: a read_committed consumer's watermark query returns it."""
    consumer = _consumer(kafka)
    try:
        return _ends(consumer, partitions)
    finally:
        consumer.close()


class TransactionProbe:
    """Both ends of `greetings`: a partition whose high watermark is past its last stable offset holds records
    of a transaction not yet committed or aborted."""

    def __init__(self, kafka: KafkaTarget, partitions: int) -> None:
        self.partitions = partitions
        self._committed = _consumer(kafka)
        self._uncommitted = Consumer(
            client_settings(
                kafka,
                **{
                    "group.id": f"faults-{uuid.uuid4().hex}",
                    "isolation.level": "read_uncommitted",  # librdkafka's default is read_committed
                },
            )
        )

    def stable(self) -> dict[int, int]:
        return _ends(self._committed, self.partitions)

    def high(self) -> dict[int, int]:
        return _ends(self._uncommitted, self.partitions)

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()


@dataclass
class Fault:
    label: str
    at: float
    stable: dict[int, int]  # last stable offsets just before the strike
    produced: int  # requests acknowledged by Kafka when it struck
    rounds: int  # rounds produced when it struck: a greeting numbered above answers a later request
    failures_before: int

    def committed_before(self, seen: list[Seen]) -> int:
        return sum(1 for s in seen if s.offset < self.stable[s.partition])

    def first_commit(self, seen: list[Seen]) -> Seen | None:
        new = [s for s in seen if s.offset >= self.stable[s.partition] and s.at >= self.at]
        return min(new, key=lambda s: s.at) if new else None

    def first_answer(self, seen: list[Seen]) -> Seen | None:
        new = [s for s in seen if s.number > self.rounds and s.at >= self.at]
        return min(new, key=lambda s: s.at) if new else None


@dataclass
class FaultResult:
    scenario: str
    faults: list[str]
    in_flight: list[int]
    recovery_s: list[float]
    first_commit_s: list[float | None]
    failures: int
    committed: int
    read_uncommitted: int
    aborted: int
    lost: int
    duplicated: int
    notes: dict[str, object] = field(default_factory=dict)

    def print(self) -> None:
        print(f"[fault result] {json.dumps(asdict(self))}", flush=True)


class Scenario:
    """One run: `names` x `rounds` requests (50 x 40 in the tests), produced round-robin in parts, faults in
    between, checked at the end. A context manager: its watcher thread stops when the run ends, passed or failed."""

    def __init__(self, stack: LocalStack, name: str, names: int = NAMES, rounds: int = ROUNDS) -> None:
        self.stack = stack
        self.name = name
        self.rounds = rounds
        # Requests go in as the generator, greetings are read as the consumer: on the secured broker, each with
        # its own login and ACLs.
        self.producer = as_principal(stack.config, GENERATOR)
        self.reader = as_principal(stack.config, CONSUMER)
        self.partitions = stack.config.partitions
        self.names = unique_names(names)
        self.next_round = 0
        self.faults: list[Fault] = []
        self.recoveries: list[float] = []
        self.watcher = Watcher(self.reader, self.partitions, {n.encode() for n in self.names})

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.watcher.close()

    @property
    def produced(self) -> int:
        return self.next_round * len(self.names)

    def produce_until(self, round_stop: int, deadline_s: float = 30) -> None:
        """Requests for rounds [next_round, round_stop): round-robin, each name's n-th before its (n+1)-th, all
        acknowledged within `deadline_s`."""
        if round_stop > self.next_round:
            produce(self.producer, "names", requests(self.names, round_stop - self.next_round), deadline_s)
            self.next_round = round_stop

    def checkpoint_counts(self) -> dict[str, int]:
        """The job's checkpoint counts from Flink's REST API: completed, in_progress, failed, ..."""
        return dict(self.stack.rest.get(f"/jobs/{self.stack.job_id}/checkpoints")["counts"])

    def completed_checkpoints(self) -> int:
        return int(self.checkpoint_counts()["completed"])

    def await_checkpoints(self, at_least: int, deadline_s: float = 120) -> None:
        wait_for(f"{at_least} completed checkpoints", lambda: self.completed_checkpoints() >= at_least, deadline_s)

    def await_committed(self, count: int, deadline_s: float = 120) -> None:
        wait_for(f"{count} committed greetings", lambda: self.watcher.count() >= count, deadline_s)

    def ready_to_strike(self) -> None:
        """At least two completed checkpoints (two more after an earlier fault's recovery) and some committed
        greetings (after an earlier fault, `await_recovery` has seen new ones)."""
        self.await_checkpoints(self.completed_checkpoints() + 2 if self.faults else 2)
        self.await_committed(1)

    def strike(self, label: str, action: Callable[[], None]) -> Fault:
        return self._struck(label, action, stable_offsets(self.reader, self.partitions), self.failures())

    def strike_mid_transaction(self, label: str, action: Callable[[], None], until_round: int) -> Fault:
        """Strike while the egress's open transaction holds greetings, so the fault leaves some to abort.

        Produces one round at a time (up to `until_round`) and strikes the moment greetings answering it are on
        the topic uncommitted: written after the latest checkpoint barrier, they belong to the transaction that
        checkpoint opened, which only the next checkpoint could commit. Striking while a burst is still being
        written keeps the chance small that a barrier just passed and the open records are all precommitted
        ones (those a restore commits); so does looking only while no checkpoint is in progress. A CI run saw it:
        struck during a checkpoint, the restore committed every open record and nothing was left to abort."""
        failures = self.failures()
        probe = TransactionProbe(self.reader, self.partitions)
        try:
            while self.next_round < until_round:
                before = probe.high()
                self.produce_until(self.next_round + 1)
                answered_by = time.monotonic() + 10
                while time.monotonic() < answered_by:
                    # During a checkpoint the records past the stable offset may all be precommitted ones.
                    if self.checkpoint_counts()["in_progress"]:
                        time.sleep(0.005)
                        continue
                    stable, high = probe.stable(), probe.high()
                    if any(high[p] > max(stable[p], before[p]) for p in high):
                        return self._struck(label, action, stable, failures)
                    time.sleep(0.005)
        finally:
            probe.close()
        raise AssertionError(f"no round up to {until_round} left greetings in an open transaction to strike at")

    def _struck(self, label: str, action: Callable[[], None], stable: dict[int, int], failures: int) -> Fault:
        fault = Fault(label, time.monotonic(), stable, self.produced, self.next_round, failures)
        action()
        self.faults.append(fault)
        print(f"[fault] {self.name}: {label} with {self.produced} requests produced", flush=True)
        return fault

    def await_recovery(self, fault: Fault, deadline_s: float = 240) -> float:
        """Seconds from the fault to the first committed greeting of a request produced after it."""
        found: list[Seen] = []

        def recovered() -> bool:
            first = fault.first_answer(self.watcher.seen())
            if first is not None:
                found.append(first)
            return first is not None

        wait_for(f"a greeting committed after {fault.label}", recovered, deadline_s)
        seconds = round(found[0].at - fault.at, 1)
        self.recoveries.append(seconds)
        print(f"[fault] {self.name}: {fault.label}: recovered, first new greeting committed after {seconds} s")
        return seconds

    def failures(self, above: int | None = None, deadline_s: float = 30) -> int:
        """Failures the job recovered from (`LocalStack.failure_count`: its exception history). With `above`,
        wait (the REST cache is ~3 s) until the count exceeds it or the deadline passes."""
        end = time.monotonic() + deadline_s
        while True:
            count = self.stack.failure_count()
            if above is None or count > above or time.monotonic() >= end:
                return count
            time.sleep(1)

    def finish(
        self, deadline_s: float = 240, expect_failure: bool = True, exact: bool = True, **notes: object
    ) -> tuple[Report, FaultResult]:
        """Read every committed greeting and count the aborted ones; the caller asserts on the report. The
        product's own verifier (`greeter-consumer verify --from-names`) must agree: asserted here (with `exact`
        False, a run that loses greetings on purpose: the verifier must fail it, reading for `deadline_s`).
        `expect_failure`: wait up to 30 s for the job's failure count to rise above its value before the first
        fault; else up to 5 s (the REST cache), so a failure that did happen is not missed. Either way the
        figure is reported, not asserted here."""
        assert self.next_round == self.rounds, f"only {self.next_round} of {self.rounds} rounds produced"
        settle_s = 3 * self.stack.config.checkpoint_interval_ms / 1000
        report = read_greetings(self.reader, self.names, self.rounds, settle_s=settle_s, deadline_s=deadline_s)
        counts = report.counts()
        uncommitted = sum(c.records for c in count_partitions(self.reader, GREETINGS).values())
        seen = self.watcher.seen()
        result = FaultResult(
            scenario=self.name,
            faults=[f.label for f in self.faults],
            in_flight=[f.produced - f.committed_before(seen) for f in self.faults],
            recovery_s=self.recoveries,
            first_commit_s=[_since(f, f.first_commit(seen)) for f in self.faults],
            failures=self.failures(above=self.faults[0].failures_before, deadline_s=30 if expect_failure else 5),
            committed=report.records,
            read_uncommitted=uncommitted,
            aborted=uncommitted - report.records,
            lost=counts[Kind.GAP] + counts[Kind.MISSING_TAIL],
            duplicated=counts[Kind.DUPLICATE],
            notes=dict(notes),
        )
        result.print()
        flags = client_flags(self.stack.config, CONSUMER)
        verdict = consumer_verdict(flags, settle_s, timeout_s=120 if exact else deadline_s)
        if exact:
            assert verdict.returncode == 0, f"greeter-consumer verify failed:\n{verdict.stdout}{verdict.stderr}"
        else:
            assert verdict.returncode == 1, f"greeter-consumer verify did not fail:\n{verdict.stdout}{verdict.stderr}"
            print(f"[fault] {self.name}: greeter-consumer verify: {verdict.stdout.strip()}", flush=True)
        return report, result


def consumer_verdict(
    kafka_flags: list[str], settle_s: float, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`greeter-consumer verify --from-names` over the whole stack (reached with `kafka_flags`, as client_flags
    makes them): its `names` hold only this run's."""
    argv = ["verify", *kafka_flags, "--from-names"]
    argv += ["--settle", str(settle_s), "--timeout", str(timeout_s)]
    return subprocess.run([sys.executable, "-m", "consumer", *argv], capture_output=True, text=True, timeout=600)


def _since(fault: Fault, seen: Seen | None) -> float | None:
    return round(seen.at - fault.at, 1) if seen else None


def greeter_workers(master_pid: int) -> set[int]:
    """gunicorn's workers: the live children of its master."""
    return set(procs.children(master_pid))
