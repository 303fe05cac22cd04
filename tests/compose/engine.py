"""A Docker engine for tests/compose: installed by install-engine (Debian's docker.io, Compose built from the Go
module proxy), started as a dockerd process this session owns and stops by its PID. An engine that already
answers is used as it is and left running."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

from stack import procs

INSTALL: Final = Path(__file__).with_name("install-engine")
START_TIMEOUT_S: Final = 60.0


def docker(*argv: str, stdin: IO[Any] | None = None, timeout: float = 900) -> str:
    """Run `docker ARGV`; its stdout, or RuntimeError with its output. The legacy builder for `docker build`:
    the machine's CLI has no buildx (compose builds with BuildKit itself)."""
    result = subprocess.run(
        ["docker", *argv],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


def _allow_forwarding() -> None:
    """dockerd sets the FORWARD policy to DROP: put it back for the tests that route between network namespaces."""
    subprocess.run(["iptables", "-P", "FORWARD", "ACCEPT"], check=False, capture_output=True)


@contextmanager
def running_engine(log: Path) -> Iterator[None]:
    """Install what is missing, start dockerd unless an engine answers, and stop what was started."""
    subprocess.run([str(INSTALL)], check=True)
    if engine_answers():
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    dockerd = procs.spawn("dockerd", ["dockerd", "--storage-driver", "overlay2"], log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not engine_answers():
            if not procs.is_running(dockerd) or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not come up; its log: {log}\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        _allow_forwarding()
        yield
    finally:
        procs.stop(dockerd, timeout=30)
        _allow_forwarding()
