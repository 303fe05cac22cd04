"""The single-mode runtime (the quick start's one JVM): a kill -9 mid-transaction, and the switch between modes.

- `kill -9` of the runtime: its job dies with it. Started again, it resumes from the newest retained checkpoint
  (what `up` does), the transaction it had open is aborted, and every name still gets exactly 1..40.
- Single -> cluster -> single on one run folder: each `up` resumes from the checkpoint the other mode retained,
  so the modes share state and the counts continue across both switches.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack.faults import kill, respawn
from stack.local import LocalStack
from tests.support.stacks import running_stack

from ..e2e.kafka_io import produce, read_greetings, requests, unique_names
from .conftest import fault_config
from .schedule import NAMES, ROUNDS, Scenario

pytestmark = pytest.mark.e2e


@pytest.fixture
def single_stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path / "run", "single stack", mode="single") as local:
        yield local


def kill_runtime(stack: LocalStack) -> None:
    kill(stack, "runtime")  # SIGKILL: the mini cluster, its job and the egress's open transaction go at once
    respawn(stack, "runtime")  # resumes from the newest retained checkpoint, as `up` does


@pytest.mark.timeout(600)
def test_runtime_killed_job_resumed_from_checkpoint(
    single_stack: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    run = scenario_on(single_stack, "single-mode runtime kill -9")
    old_job = single_stack.job_id
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(ROUNDS // 2)
    fault = run.strike_mid_transaction(
        "kill -9 runtime", lambda: kill_runtime(single_stack), until_round=2 * ROUNDS // 3
    )
    new_job = single_stack.job_id
    assert new_job and new_job != old_job, "the respawned runtime must run a new job"
    restored = single_stack.rest.get(f"/jobs/{new_job}/checkpoints")["latest"]["restored"]
    assert restored is not None, "the new job did not restore from a checkpoint"
    run.produce_until(ROUNDS)
    run.await_recovery(fault)

    report, result = run.finish(expect_failure=False, restored_checkpoint=restored.get("id"))
    assert report.ok, "\n".join(report.summary())  # counts continue: 1..40 per name, none twice
    # What the killed job had written in its open transaction is on the topic, aborted, and unseen above.
    assert result.aborted > 0, f"nothing aborted: {result.read_uncommitted} uncommitted, {result.committed} committed"


def _report(line: str) -> None:
    print(f"[mode-switch stack] {line}", file=sys.stderr, flush=True)


@pytest.mark.timeout(900)
def test_counts_continue_from_single_to_cluster_and_back(tmp_path: Path, stacks: list[LocalStack]) -> None:
    config = fault_config(tmp_path / "run")
    names = unique_names(NAMES)
    settle_s = 3 * config.checkpoint_interval_ms / 1000
    third = ROUNDS // 3
    for step, mode in enumerate(("single", "cluster", "single"), start=1):
        local = LocalStack(dataclasses.replace(config, mode=mode), report=_report)
        stacks.append(local)
        local.up(fresh=step == 1)  # later steps resume from the checkpoint the other mode retained
        assert [p.name for p in local.running()][2:] == (
            ["runtime"] if mode == "single" else ["jobmanager", "taskmanager"]
        )
        if step > 1:
            restored = local.rest.get(f"/jobs/{local.job_id}/checkpoints")["latest"]["restored"]
            assert restored is not None, f"the {mode} job did not restore from the retained checkpoint"
        produce(config.bootstrap_servers, "names", requests(names, third))
        report = read_greetings(config.bootstrap_servers, names, step * third, settle_s=settle_s)
        assert report.ok, f"after step {step} ({mode}):\n" + "\n".join(report.summary())
        # Committed greetings were committed by a completed checkpoint: the next `up` resumes past them.
        local.down()
