"""Kafka outages past the clients' timeouts, on one broker, with the timeouts shortened so the tests stay short.

- The egress producer's `delivery.timeout.ms` (120 s by default; 15 s here): the broker is killed and stays away
  past it, with greetings in flight. The job must come back once Kafka does, with no restart loop outliving the
  outage, and stay exact.
- The egress's `transactionTimeout` (15 min in module.yaml; 15 s here, with the broker's
  `transaction.max.timeout.ms` lowered to match): the TaskManager is frozen (SIGSTOP) the moment a checkpoint
  completes, before it commits that checkpoint's transaction, and stays away past the timeout. The broker aborts
  the transaction; the restored job's commit of it fails and Flink's FlinkKafkaProducer only logs that (its
  recoverAndCommit swallows the broker's refusal), so those greetings are lost. The verifier must show the loss,
  and `greeter-stack status` must report it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stack import daemons, procs
from stack.config import HOST
from stack.faults import kill, respawn
from stack.local import LocalStack
from stack.readiness import port_free
from tests.support.stacks import running_stack
from tests.support.waiting import wait_for

from .schedule import ROUNDS, Scenario, TransactionProbe

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT_S = 15
# The producer refuses a delivery.timeout.ms below linger.ms + request.timeout.ms (30 s by default).
REQUEST_TIMEOUT_S = 10
# Past the delivery timeout by a margin, so that records the egress had not sent when the broker died expire.
KAFKA_DOWN_S = DELIVERY_TIMEOUT_S + 10


@pytest.mark.timeout(900)
def test_kafka_down_past_the_egress_delivery_timeout(
    tmp_path: Path, scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    egress = (
        ("delivery.timeout.ms", str(DELIVERY_TIMEOUT_S * 1000)),
        ("request.timeout.ms", str(REQUEST_TIMEOUT_S * 1000)),
    )
    with running_stack(tmp_path / "run", "delivery timeout", mode="cluster", egress_overrides=egress) as stack:
        run = scenario_on(stack, f"kafka kill -9, {KAFKA_DOWN_S} s down (delivery.timeout.ms {DELIVERY_TIMEOUT_S} s)")
        run.produce_until(ROUNDS // 3)
        run.ready_to_strike()
        run.produce_until(2 * ROUNDS // 3)  # in flight when the broker dies: some greetings may be unsent
        old = stack.state.proc("kafka")
        fault = run.strike(f"kill -9 kafka, {KAFKA_DOWN_S} s down", lambda: kill(stack, "kafka"))
        wait_for("the broker to exit", lambda: not procs.is_running(old), 10)
        assert port_free(HOST, stack.config.ports.kafka), "the broker's port still answers after kill -9"
        time.sleep(max(0.0, fault.at + KAFKA_DOWN_S - time.monotonic()))  # the outage itself, not a check
        respawn(stack, "kafka")
        back_at = time.monotonic()  # ready again: a restarted KRaft node first waits out its old registration
        run.produce_until(ROUNDS)
        recovery_s = run.await_recovery(fault, deadline_s=300)

        # No restart loop outlives the outage: once greetings commit again, three more checkpoints complete
        # with the job RUNNING and its failure count standing still.
        failures_recovered = run.failures()
        run.await_checkpoints(run.completed_checkpoints() + 3)
        assert stack.rest.job(stack.require_job())["state"] == "RUNNING"
        assert run.failures() == failures_recovered, "the job kept failing after Kafka was back"

        report, result = run.finish(
            deadline_s=300,
            expect_failure=False,
            outage_s=round(back_at - fault.at, 1),
            recovery_after_return_s=round(recovery_s - (back_at - fault.at), 1),
            # Greetings the egress had handed to its producer but not sent when the broker died expire at the
            # delivery timeout, and the job restarts from its checkpoint. Reported, not asserted: a checkpoint
            # that begins while the broker is away blocks the task (its next transaction waits for the broker up
            # to max.block.ms, 60 s), so greetings answered after it reach the producer only once Kafka is back.
            expired_batches=_expired_batches(stack),
        )
        assert report.ok, "\n".join(report.summary())
        # Nothing lost, so no LOST line (a restore's benign "invalid state" warning, when the job restarted, is none).
        assert _lost_lines(stack) == [], "greeter-stack status reports a loss where there was none"
        assert result.first_commit_s[0] is not None and result.first_commit_s[0] >= KAFKA_DOWN_S, result.first_commit_s


def _expired_batches(stack: LocalStack) -> int:
    """The egress's record batches the runtime's logs show expired at the delivery timeout."""
    return sum(
        log.read_text(errors="replace").count("Caused by: org.apache.kafka.common.errors.TimeoutException: Expiring")
        for log in daemons.task_logs(stack.config)
    )


TRANSACTION_TIMEOUT_S = 15
HAZARD_BROKER = (
    ("transaction.max.timeout.ms", str(TRANSACTION_TIMEOUT_S * 1000)),
    # The broker looks for timed-out transactions every 10 s by default: every second here, to keep the test short.
    ("transaction.abort.timed.out.transaction.cleanup.interval.ms", "1000"),
)
TIMEOUT_ROLLBACK = "Completed rollback of ongoing transaction for transactionalId"


def _rollbacks(stack: LocalStack) -> int:
    """The transactions the broker aborted because they outlived their timeout (its log says so for each)."""
    log = stack.config.log_file("kafka")
    return log.read_text(errors="replace").count(TIMEOUT_ROLLBACK) if log.exists() else 0


def freeze_at_checkpoint_completion(stack: LocalStack) -> int:
    """SIGSTOP the TaskManager the moment the JobManager writes the metadata of a checkpoint triggered after this
    call: the checkpoint completes and the TaskManager, frozen, cannot commit its transaction. The checkpoint's
    number."""
    job_dir = stack.config.checkpoint_dir / stack.require_job()
    before = {d.name for d in job_dir.iterdir()}  # Flink makes a checkpoint's folder when it triggers it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # polled tightly: the commit follows the metadata within milliseconds
        for folder in job_dir.iterdir():
            if folder.name not in before and (folder / "_metadata").exists():
                kill(stack, "taskmanager", signal.SIGSTOP)
                return int(folder.name.removeprefix("chk-"))
        time.sleep(0.0005)
    raise AssertionError(f"no new checkpoint metadata in {job_dir} within 60 s")


def freeze_before_a_commit(stack: LocalStack, run: Scenario, attempts: int = 5) -> int:
    """Produce a round, wait until its greetings are written (in the open transaction), and freeze the TaskManager
    as the next checkpoint completes: until the greetings' transaction is still uncommitted with it frozen (a
    freeze that came after the commit is undone at once, well within the heartbeat timeout). The checkpoint."""
    probe = TransactionProbe(run.reader, run.partitions)
    try:
        for _ in range(attempts):
            # A round's greetings (or fewer and a commit's markers, one per partition: the rest follow at once).
            enough = sum(probe.high().values()) + len(run.names)
            run.produce_until(run.next_round + 1)
            wait_for("the round's greetings written", lambda: sum(probe.high().values()) >= enough, 30)  # noqa: B023
            written = probe.high()
            checkpoint = freeze_at_checkpoint_completion(stack)
            stable = probe.stable()
            if any(stable[p] < written[p] for p in written):
                return checkpoint
            kill(stack, "taskmanager", signal.SIGCONT)
            print(f"[fault] the TaskManager had committed checkpoint {checkpoint} before it froze: again", flush=True)
    finally:
        probe.close()
    raise AssertionError(f"the TaskManager committed before it froze in all {attempts} attempts")


@pytest.mark.timeout(900)
def test_runtime_away_past_the_transaction_timeout_loses_a_committed_checkpoints_greetings(
    tmp_path: Path, scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    with running_stack(
        tmp_path / "run",
        "transaction timeout",
        mode="cluster",
        egress_transaction_timeout=f"{TRANSACTION_TIMEOUT_S}s",
        kafka_overrides=HAZARD_BROKER,
    ) as stack:
        run = scenario_on(
            stack, f"taskmanager frozen at a checkpoint past the {TRANSACTION_TIMEOUT_S} s transactionTimeout"
        )
        run.produce_until(ROUNDS // 3)
        run.ready_to_strike()
        rollbacks_before = _rollbacks(stack)
        run.produce_until(ROUNDS // 2)
        checkpoint = freeze_before_a_commit(stack, run)
        frozen_at = time.monotonic()
        fault = run.strike("SIGSTOP taskmanager at a completed checkpoint", lambda: None)  # struck already
        wait_for(
            "the broker to abort the frozen TaskManager's transaction at its timeout",
            lambda: _rollbacks(stack) > rollbacks_before,
            TRANSACTION_TIMEOUT_S + 60,
        )
        kill(stack, "taskmanager")  # SIGKILL ends it frozen; the respawned one restores checkpoint `checkpoint`
        respawn(stack, "taskmanager")
        away_s = round(time.monotonic() - frozen_at, 1)
        run.produce_until(ROUNDS)
        run.await_recovery(fault, deadline_s=300)
        wait_for(
            "every name's last greeting committed",
            lambda: sum(1 for seen in run.watcher.seen() if seen.number == ROUNDS) >= len(run.names),
            120,
        )

        report, result = run.finish(
            deadline_s=20,  # every greeting that can come has come: the rest is the loss
            exact=False,
            checkpoint=checkpoint,
            taskmanager_away_s=away_s,
            broker_rollbacks=_rollbacks(stack) - rollbacks_before,
        )
        # The greetings of the checkpoint's transaction are lost: gaps in the names they answered, nothing
        # duplicated. (finish() asserted that the product's verifier fails too.)
        assert result.lost > 0 and result.duplicated == 0, "\n".join(report.summary())
        # And the product says so: `greeter-stack status` names the transaction the runtime could not commit.
        lost = _lost_lines(stack)
        assert len(lost) == 1 and "greetings are lost" in lost[0], lost
        print(f"[fault] {run.name}: greeter-stack status: {lost[0]}", flush=True)


def _lost_lines(stack: LocalStack) -> list[str]:
    """The LOST lines of `greeter-stack status` on `stack`."""
    status = subprocess.run(
        [str(stack.config.venv_bin / "greeter-stack"), "--run-dir", str(stack.config.run_dir), "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    return [line for line in status.stdout.splitlines() if line.startswith("LOST")]
