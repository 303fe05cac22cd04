"""A real stack on free ports in its own run folder, always stopped, for fixtures that need one."""

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
    """Start a fresh stack with `settings` overriding StackConfig's defaults; stop it whatever happens."""
    config = StackConfig(run_dir=run_dir, ports=Ports.free(), **settings)
    local = LocalStack(config, report=lambda line: print(f"[{label}] {line}", file=sys.stderr, flush=True))
    try:
        local.up(fresh=True)  # stops what it started if it fails
        yield local
    finally:
        local.down()
