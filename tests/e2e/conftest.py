"""The real stack (Kafka, the StateFun job in the single-mode runtime, the greeter), started once for
this folder on free ports in a temporary run folder, expiry off whatever the shell sets (tests/support/stacks.py), and
always stopped, whatever happens.

A missing JVM or Maven fails here with a message naming it; nothing is skipped. Set GREETER_E2E_RUN_DIR to keep
the run folder (logs, checkpoints) somewhere of your choosing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.local import LocalStack
from tests.support.stacks import running_stack


@pytest.fixture(scope="package")  # stopped once e2e/ is done, not when the worker that ran it ends
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    chosen = os.environ.get("GREETER_E2E_RUN_DIR")
    run_dir = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("stack-run")
    with running_stack(run_dir, "e2e stack") as local:
        yield local
