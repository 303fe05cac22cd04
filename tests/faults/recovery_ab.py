"""A fault's recovery time with the stack's settings before and after a change, alternated in one run.

    scripts/recovery-ab [--fault kafka|taskmanager-twice|jobmanager] [--rounds 2] [--keep]

Each round runs the fault test's own body (tests/faults/test_*.py: the same schedule, the same exactness checks)
on a fresh cluster-mode stack per variant, on free ports in a temporary run folder: "before" with the settings
as they were (StackConfig's kafka_overrides / flink_overrides set back to them), "after" with the stack's
defaults. The variants alternate, so a machine whose speed drifts slows both alike. Prints each run's recovery
times and a summary; exits 1 if a run fails its checks. With --keep the run folders (the logs whose timestamps
say where the seconds went) stay.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stack.local import LocalStack
from tests.support.stacks import running_stack

from . import test_jobmanager, test_kafka, test_taskmanager
from .schedule import Scenario

# What each change replaced: Kafka's and Flink's defaults (RELIABILITY.md, "Where a recovery's seconds go").
BEFORE: dict[str, Any] = {
    "kafka_overrides": (("broker.heartbeat.interval.ms", "2000"), ("broker.session.timeout.ms", "9000")),
    "flink_overrides": (("cluster.registration.error-delay", "10000"),),
}
VARIANTS: dict[str, dict[str, Any]] = {"before": BEFORE, "after": {}}

FaultTest = Callable[[LocalStack, Callable[[str], Scenario]], None]
FAULTS: dict[str, FaultTest] = {
    "kafka": test_kafka.test_kafka_broker_killed,
    "taskmanager-twice": test_taskmanager.test_taskmanager_killed_twice,
    "jobmanager": test_jobmanager.test_jobmanager_killed_job_resumed_from_checkpoint,
}


def run_once(fault: FaultTest, run_dir: Path, label: str, settings: dict[str, Any]) -> list[float]:
    """The fault test's body on a fresh stack of `settings`: its recovery times, in seconds."""
    scenarios: list[Scenario] = []
    with running_stack(run_dir, label, mode="cluster", **settings) as stack:

        def scenario(name: str) -> Scenario:
            scenarios.append(Scenario(stack, name))
            return scenarios[-1]

        try:
            fault(stack, scenario)
        finally:
            for made in scenarios:
                made.watcher.close()
    return [seconds for made in scenarios for seconds in made.recoveries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault", choices=sorted(FAULTS), default="kafka")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the run folders (logs) after the run")
    args = parser.parse_args(argv)
    results: dict[str, list[list[float]]] = {name: [] for name in VARIANTS}
    folder = Path(tempfile.mkdtemp(prefix="recovery-ab-"))
    try:
        for round_number in range(1, args.rounds + 1):
            for variant, settings in VARIANTS.items():
                label = f"{args.fault} {variant} {round_number}"
                run_dir = folder / f"{variant}-{round_number}" / "run"
                try:
                    seconds = run_once(FAULTS[args.fault], run_dir, label, settings)
                except AssertionError as error:
                    print(f"[recovery-ab] {label}: failed: {error}", flush=True)
                    return 1
                results[variant].append(seconds)
                print(f"[recovery-ab] {label}: recovery {seconds} s", flush=True)
    finally:
        print(f"[recovery-ab] run folders {folder}" + (" (kept)" if args.keep else " (removed)"), flush=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    for variant, runs in results.items():
        print(f"[recovery-ab] {args.fault} {variant}: {runs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
