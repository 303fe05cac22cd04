"""stack/freeports.py: ports below the kernel's ephemeral range, never handed to two callers within RESERVED_S,
across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack import freeports
from stack.readiness import port_free


@pytest.fixture(autouse=True)
def _own_reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(freeports, "RESERVATIONS", tmp_path)
    return tmp_path


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = freeports.free_ports(200)

    assert len(set(ports)) == 200
    assert all(freeports.LOWEST <= port < freeports._ephemeral_start() for port in ports)
    assert all(port_free("127.0.0.1", port) for port in ports)


def test_two_processes_choosing_at_once_never_share_a_port(tmp_path: Path) -> None:
    script = (
        # The same random sequence in both: without the reservations they would choose the same ports.
        "import random; from pathlib import Path; from stack import freeports; random.seed(7); "
        f"freeports.RESERVATIONS = Path({str(tmp_path)!r}); "
        "print(*freeports.free_ports(500))"
    )
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    chosen = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        chosen.append({int(port) for port in out.split()})

    assert len(chosen[0]) == len(chosen[1]) == 500
    assert not chosen[0] & chosen[1]


def test_a_reserved_port_is_handed_out_again_only_after_its_reservation_ends(
    _own_reservations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (port,) = freeports.free_ports(1)
    assert not freeports._reserve(port)

    expired = time.time() - freeports.RESERVED_S - 1
    os.utime(_own_reservations / str(port), (expired, expired))
    assert freeports._reserve(port)
    assert not freeports._reserve(port)
