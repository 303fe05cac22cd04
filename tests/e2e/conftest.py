"""The real stack (Kafka, Flink JobManager + TaskManager with the StateFun job, the greeter), started once per
session on free ports in a temporary run folder, and always stopped, whatever happens.

A missing JVM or Maven fails here with a message naming it; nothing is skipped. Set GREETER_E2E_RUN_DIR to keep
the run folder (logs, checkpoints) somewhere of your choosing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.config import Ports, StackConfig
from stack.local import LocalStack


def _report(line: str) -> None:
    print(f"[e2e stack] {line}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    chosen = os.environ.get("GREETER_E2E_RUN_DIR")
    run_dir = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("stack-run")
    local = LocalStack(StackConfig(run_dir=run_dir, ports=Ports.free()), report=_report)
    try:
        local.up(fresh=True)  # stops what it started if it fails
        yield local
    finally:
        local.down()
