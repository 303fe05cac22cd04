"""The pipeline benchmark's floor (bench/peers/floor.py): what it writes is what the greeter writes, and how the
benchmark starts it in the greeter's place (bench/floor.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from statefun import RequestReplyHandler

from bench import floor
from bench.peers.floor import floor_functions
from greeter.config.settings import Settings
from greeter.protocol.harness import RuntimeHarness
from greeter.web.app import create_app
from stack import daemons
from stack.config import Ports, StackConfig
from tests.protocol.messages import greet


def _greeter(settings: Settings) -> RuntimeHarness:
    client = create_app(settings).test_client()
    return RuntimeHarness(send=lambda body: client.post("/statefun", data=body).data, function_type="example/greeter")


def _floor(settings: Settings) -> RuntimeHarness:
    handler = RequestReplyHandler(floor_functions(settings))
    return RuntimeHarness(send=handler.handle_sync, function_type="example/greeter")


@pytest.mark.parametrize("ttl_seconds", [0, 60])
def test_the_floor_greets_and_counts_exactly_as_the_greeter(ttl_seconds: int) -> None:
    settings = Settings(seen_count_ttl_seconds=ttl_seconds)
    greeter, bare = _greeter(settings), _floor(settings)
    batches = [("Ada", 1), ("Bob", 3), ("Ada", 4), ("Ünal 😀", 2), ("Bob", 1)]
    for name, size in batches:
        arguments = [greet(name)] * size
        assert bare.invoke(name, arguments) == greeter.invoke(name, arguments)
    assert bare.specs == greeter.specs  # the same state name, type and expiry
    assert {key: cell.value for key, cell in bare.cells.items()} == {
        key: cell.value for key, cell in greeter.cells.items()
    }
    assert len(bare.cells) == 3 and bare.missing_state_replies == greeter.missing_state_replies == 1


def test_the_floor_serves_on_the_greeters_port_workers_and_pid_file(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, ports=Ports.free(), greeter_workers=3)
    argv = floor.floor_argv(config, keepalive_s=75)
    assert argv[-1] == "bench.peers.floor:app"
    options = dict(zip(argv[3:-1:2], argv[4:-1:2], strict=False))
    assert options["--bind"] == f"127.0.0.1:{config.ports.greeter}"
    assert options["--workers"] == "3"
    assert options["--pid"] == str(tmp_path / "greeter.pid")
    assert options["--keep-alive"] == "75"


@dataclass
class _Recorded:
    def proc(self, name: str) -> str:
        return f"the recorded {name}"


@dataclass
class _FakeStack:
    """What FunctionServers uses of a LocalStack: the recorded greeter, the start of a daemon, the report."""

    config: StackConfig
    state: _Recorded = field(default_factory=_Recorded)
    started: list[list[str]] = field(default_factory=list)

    def java(self) -> str:
        return "java"

    def start_daemon(self, name: str, argv: list[str]) -> None:
        assert name == "greeter"
        self.started.append(argv)

    def report(self, line: str) -> None:
        pass


def test_the_servers_swap_only_when_the_next_system_needs_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _FakeStack(StackConfig(run_dir=tmp_path, venv_bin=tmp_path, ports=Ports.free()))
    (tmp_path / "greeter-serve").touch()
    stopped: list[str] = []
    monkeypatch.setattr(floor.procs, "stop", lambda proc, _timeout: stopped.append(proc) or "stopped")
    servers = floor.FunctionServers(stack)  # type: ignore[arg-type]

    for system in ("statefun", "quix", "floor", "quix", "floor", "statefun", "statefun"):
        servers.serve(system)

    assert stopped == ["the recorded greeter"] * 2  # the greeter, then the floor in its place
    assert stack.started == [floor.floor_argv(stack.config), daemons.argv("java", stack.config, "greeter")]
    assert servers.swaps == 2 and servers.serving == "statefun"
