"""Free loopback ports for stacks started side by side (the tests' two workers, benchmarks, a developer's own
stack), handed out so that two processes never get the same one before its server binds it.

Two things could take a port between the choice and the server's bind (a stack binds its last port 15-20 s after
its ports are chosen): a client socket of any process, which the kernel gives a port of its ephemeral range
(`ip_local_port_range`), and another process choosing the same free port. So ports are drawn below the ephemeral
range, and each is reserved across processes for RESERVED_S: a file per port under RESERVATIONS, checked and
renewed under an exclusive lock.
"""

from __future__ import annotations

import fcntl
import random
import tempfile
import time
from pathlib import Path
from typing import Final

from .readiness import port_free

LOWEST: Final = 10_000
EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
RESERVATIONS: Final = Path(tempfile.gettempdir()) / "greeter-free-ports"
RESERVED_S: Final = 600.0


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports a server can bind on `host` now, none handed out to another caller in RESERVED_S."""
    below = _ephemeral_start()
    RESERVATIONS.mkdir(exist_ok=True)
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(LOWEST, below)
        if port not in chosen and port_free(host, port) and _reserve(port):
            chosen.append(port)
    return chosen


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default start


def _reserve(port: int) -> bool:
    """True if this call reserved `port`: no reservation of it younger than RESERVED_S existed."""
    marker = RESERVATIONS / str(port)
    with marker.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        status = marker.stat()
        if status.st_size and time.time() - status.st_mtime < RESERVED_S:
            return False
        handle.write(".")  # non-empty, and its mtime is the reservation's time
        return True
