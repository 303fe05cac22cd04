"""The one way tests start a real stack: free ports, its own run folder, always stopped (e2e, faults, bench)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stack.config import Ports, StackConfig
from stack.local import LocalStack


@contextmanager
def running_stack(run_dir: Path, label: str, **settings: Any) -> Iterator[LocalStack]:
    """Start a fresh stack with `settings` overriding StackConfig's defaults (ports: free ones unless given);
    stop it whatever happens."""
    config = StackConfig(run_dir=run_dir, **{"ports": Ports.free(), **settings})
    local = LocalStack(config, report=lambda line: print(f"[{label}] {line}", file=sys.stderr, flush=True))
    try:
        local.up(fresh=True)  # stops what it started if it fails
        yield local
    finally:
        local.down()
