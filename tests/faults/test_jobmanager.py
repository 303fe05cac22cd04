"""kill -9 of the JobManager: a session cluster without HA loses the job with it. The JobManager is started
again and the job resubmitted from the latest retained checkpoint, as `greeter-stack up` does after a `down`:
the new job (a new job id, so its restart count starts at 0) must restore from that checkpoint and every
count must continue."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stack.faults import kill, respawn, resubmit
from stack.local import LocalStack
from tests.support.waiting import wait_for

from .schedule import ROUNDS, Scenario

pytestmark = pytest.mark.e2e


def slots_free(stack: LocalStack) -> bool:
    overview = stack.rest.overview()
    return bool(overview["taskmanagers"] >= 1 and overview["slots-available"] >= stack.config.parallelism)


@pytest.mark.timeout(600)
def test_jobmanager_killed_job_resumed_from_checkpoint(
    fault_stack: LocalStack, scenario: Callable[[str], Scenario]
) -> None:
    run = scenario("jobmanager kill -9, resubmit from checkpoint")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    old_job = fault_stack.job_id
    run.produce_until(2 * ROUNDS // 3)
    fault = run.strike("kill -9 jobmanager", lambda: kill(fault_stack, "jobmanager"))
    run.produce_until(ROUNDS)  # Kafka takes it while there is no job
    respawn(fault_stack, "jobmanager")
    # The surviving TaskManager registers with the new JobManager once its old tasks are cancelled.
    wait_for("the TaskManager to offer its slots to the new JobManager", lambda: slots_free(fault_stack), 120, 1)
    # What `up` does after `down`: resume from the newest retained checkpoint of any earlier job in the run folder.
    new_job = resubmit(fault_stack)
    assert new_job and new_job != old_job
    restored = fault_stack.rest.get(f"/jobs/{new_job}/checkpoints")["latest"]["restored"]
    assert restored is not None, "the resubmitted job did not restore from a checkpoint"
    run.await_recovery(fault)

    notes = {"restored_checkpoint": restored.get("id"), "old_job": old_job, "new_job": new_job}
    report, _ = run.finish(expect_failure=False, **notes)
    assert report.ok, "\n".join(report.summary())  # counts continue: 1..40 per name, none twice
