"""Expiry changed across a restart from a retained checkpoint.

Switched on (GREETER_SEEN_COUNT_TTL 0 -> 3600): Flink 1.16 cannot restore a state whose TTL was switched on, so
with expiry on the greeter keeps its count under another state name, `seen_count_ttl`. The restore therefore
succeeds (no restart), and the counts start again under the new name: every name is welcomed again. That is the
designed behaviour, asserted here exactly. Switched off again (3600 -> 0): `seen_count` was kept, untouched, so
the counts it held before expiry was switched on come back and continue. Only the duration changed (3600 -> 7200):
the same state, and every count continues."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.verify import greeting_number
from stack.local import LocalStack
from tests.support.waiting import wait_for

from ..e2e.kafka_io import count_partitions, greetings, produce, read, read_greetings, requests, unique_names
from .conftest import fault_config
from .schedule import NAMES, ROUNDS, FaultResult

pytestmark = pytest.mark.e2e

HALF = ROUNDS // 2


def _report(line: str) -> None:
    print(f"[ttl-switch stack] {line}", file=sys.stderr, flush=True)


@pytest.mark.timeout(600)
def test_ttl_switched_on_across_a_restart_restores_and_counts_anew(tmp_path: Path, stacks: list[LocalStack]) -> None:
    names = unique_names(NAMES)
    after, resume_s, restored = _restart_with_ttl(tmp_path, stacks, 0, 3600, names)
    settle_s = 3 * after.config.checkpoint_interval_ms / 1000
    bootstrap = after.config.bootstrap_servers
    assert after.rest.job(after.require_job())["state"] == "RUNNING"

    produce(bootstrap, "names", requests(names, HALF))
    records = read(bootstrap, "greetings", {n.encode() for n in names}, NAMES * ROUNDS, 180, settle_s)
    numbers: dict[str, list[int | None]] = {name: [] for name in names}
    for name, greeting in greetings(records):
        numbers[name].append(greeting_number(name, greeting))
    # Before the switch 1..20 under `seen_count`; after it the count starts again under `seen_count_ttl`.
    expected = list(range(1, HALF + 1)) * 2
    wrong = {name: got for name, got in numbers.items() if got != expected}
    assert not wrong, f"{len(wrong)} names differ from 1..{HALF} then 1..{HALF}, e.g. {next(iter(wrong.items()))}"
    assert after.failure_count() == 0, "the restore with the new state name must not fail the job"

    uncommitted = sum(c.records for c in count_partitions(bootstrap, "greetings").values())
    FaultResult(
        scenario="TTL 0 -> 3600 across down/up",
        faults=["down(), up() with GREETER_SEEN_COUNT_TTL=3600"],
        in_flight=[0],
        recovery_s=[round(resume_s, 1)],
        first_commit_s=[None],
        failures=after.failure_count(),
        committed=len(records),
        read_uncommitted=uncommitted,
        aborted=uncommitted - len(records),
        lost=0,
        duplicated=0,
        notes={"restored_checkpoint": restored.get("id"), "per_name": "1..20 then 1..20"},
    ).print()


@pytest.mark.timeout(900)
def test_ttl_switched_off_again_brings_back_the_counts_from_before(tmp_path: Path, stacks: list[LocalStack]) -> None:
    names = unique_names(NAMES)
    with_ttl, _, _ = _restart_with_ttl(tmp_path, stacks, 0, 3600, names)
    config = with_ttl.config
    settle_s = 3 * config.checkpoint_interval_ms / 1000
    produce(config.bootstrap_servers, "names", requests(names, HALF))  # 1..HALF afresh under `seen_count_ttl`
    # Committed greetings: the checkpoint that holds their counts completed, and `down` keeps it.
    keys = {n.encode() for n in names}
    assert len(read(config.bootstrap_servers, "greetings", keys, 2 * NAMES * HALF, 180, settle_s)) == 2 * NAMES * HALF
    with_ttl.down()

    without = LocalStack(dataclasses.replace(config, seen_count_ttl=0), report=_report)
    stacks.append(without)
    without.up()
    produce(config.bootstrap_servers, "names", requests(names, HALF))
    records = read(config.bootstrap_servers, "greetings", keys, 3 * NAMES * HALF, 180, settle_s)
    numbers: dict[str, list[int | None]] = {name: [] for name in names}
    for name, greeting in greetings(records):
        numbers[name].append(greeting_number(name, greeting))
    # 1..HALF under `seen_count`, 1..HALF under `seen_count_ttl`, then `seen_count` again: HALF+1..2*HALF.
    expected = [*range(1, HALF + 1), *range(1, HALF + 1), *range(HALF + 1, 2 * HALF + 1)]
    wrong = {name: got for name, got in numbers.items() if got != expected}
    assert not wrong, f"{len(wrong)} names differ from on/off/on counting, e.g. {next(iter(wrong.items()))}"
    assert without.failure_count() == 0


@pytest.mark.timeout(600)
def test_ttl_duration_changed_across_a_restart_keeps_every_count(tmp_path: Path, stacks: list[LocalStack]) -> None:
    names = unique_names(NAMES)
    after, resume_s, restored = _restart_with_ttl(tmp_path, stacks, 3600, 7200, names)
    settle_s = 3 * after.config.checkpoint_interval_ms / 1000
    bootstrap = after.config.bootstrap_servers
    produce(bootstrap, "names", requests(names, HALF))
    report = read_greetings(bootstrap, names, 2 * HALF, settle_s=settle_s)
    assert report.ok, "\n".join(report.summary())  # every name 1..40: the count went on under `seen_count_ttl`
    assert after.failure_count() == 0
    print(f"[ttl-duration] restored checkpoint {restored.get('id')}, up in {resume_s:.1f} s", flush=True)


def _restart_with_ttl(
    tmp_path: Path, stacks: list[LocalStack], before_ttl: int, after_ttl: int, names: list[str]
) -> tuple[LocalStack, float, dict[str, Any]]:
    """Up with `before_ttl`, every name greeted 1..HALF, a checkpoint after it, down; then up (not fresh: from the
    retained checkpoint) with `after_ttl`. The new stack, its `up` in seconds and the checkpoint it restored."""
    config = fault_config(tmp_path / "run", seen_count_ttl=before_ttl)
    bootstrap = config.bootstrap_servers
    before = LocalStack(config, report=_report)
    stacks.append(before)
    before.up(fresh=True)
    produce(bootstrap, "names", requests(names, HALF))
    first = read_greetings(bootstrap, names, HALF, settle_s=3 * config.checkpoint_interval_ms / 1000)
    assert first.ok, "\n".join(first.summary())
    wait_for("a checkpoint after the last greeting", lambda: _checkpoints(before) >= 2, 60)
    before.down()

    after = LocalStack(dataclasses.replace(config, seen_count_ttl=after_ttl), report=_report)
    stacks.append(after)
    started = time.monotonic()
    after.up()
    resume_s = time.monotonic() - started
    restored = after.rest.get(f"/jobs/{after.job_id}/checkpoints")["latest"]["restored"]
    assert restored is not None, "the job did not restore from the retained checkpoint"
    return after, resume_s, restored


def _checkpoints(stack: LocalStack) -> int:
    return int(stack.rest.get(f"/jobs/{stack.job_id}/checkpoints")["counts"]["completed"])
