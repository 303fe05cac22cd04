"""Kafka outages past the clients' timeouts, on one broker, with the timeouts shortened so the tests stay short.

- The egress producer's `delivery.timeout.ms` (120 s by default; 15 s here): the broker is killed and stays away
  past it. The job must come back once Kafka does, with no restart loop outliving the outage, and stay exact.
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

from .schedule import ROUNDS, Scenario

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
        run.produce_until(ROUNDS // 2)
        old = stack.state.proc("kafka")
        # Struck while greetings are being written, so that some the egress has not sent yet can expire.
        fault = run.strike_mid_transaction(
            f"kill -9 kafka, {KAFKA_DOWN_S} s down", lambda: kill(stack, "kafka"), until_round=2 * ROUNDS // 3
        )
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
            # Greetings the egress had not sent when the broker died, failed at the delivery timeout (the job then
            # restarts from its checkpoint): reported, since a kill after every send was acknowledged expires none.
            expired_batches=_expired_batches(stack),
        )
        assert report.ok, "\n".join(report.summary())
        # The restore's benign "invalid state" of an already committed transaction is not reported as a loss.
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
    """SIGSTOP the TaskManager the moment the JobManager writes a new checkpoint's metadata: the checkpoint
    completes and the TaskManager, frozen, cannot commit its transaction. The checkpoint's number."""
    job_dir = stack.config.checkpoint_dir / stack.require_job()
    before = {d.name for d in job_dir.iterdir()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # polled tightly: the commit follows the metadata within milliseconds
        for folder in job_dir.iterdir():
            if folder.name not in before and (folder / "_metadata").exists():
                kill(stack, "taskmanager", signal.SIGSTOP)
                return int(folder.name.removeprefix("chk-"))
        time.sleep(0.0005)
    raise AssertionError(f"no new checkpoint metadata in {job_dir} within 60 s")


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
        # Greetings in the open transaction, then the freeze as the checkpoint that precommitted them completes.
        run.produce_until(ROUNDS // 2)
        fault = run.strike("SIGSTOP taskmanager at a completed checkpoint", lambda: None)
        checkpoint = freeze_at_checkpoint_completion(stack)
        frozen_at = time.monotonic()
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
