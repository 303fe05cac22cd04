"""The one way tests start a real stack: free ports, its own run folder, always stopped (e2e, faults, bench)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stack.config import Ports, StackConfig
from stack.local import LocalStack


def stack_config(run_dir: Path, **settings: Any) -> StackConfig:
    """StackConfig's defaults with `settings` over them, on free ports unless given, and expiry off unless given:
    the developer's shell (GREETER_SEEN_COUNT_TTL) never decides what a test sees."""
    return StackConfig(run_dir=run_dir, **{"ports": Ports.free(), "seen_count_ttl": 0, **settings})


@contextmanager
def running_stack(run_dir: Path, label: str, **settings: Any) -> Iterator[LocalStack]:
    """Start a fresh stack of `stack_config(run_dir, **settings)`; stop it whatever happens."""
    local = LocalStack(
        stack_config(run_dir, **settings), report=lambda line: print(f"[{label}] {line}", file=sys.stderr, flush=True)
    )
    try:
        local.up(fresh=True)  # stops what it started if it fails
        yield local
    finally:
        local.down()
