"""stack/readiness.py: deadlines, early death, interrupts; error messages name the process and its log."""

import threading
from pathlib import Path

import pytest

from stack.readiness import Interrupted, StartError, port_free, port_open, tail, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "kafka.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)) + "\nERROR the real cause\n")
    return log


def test_ready_returns(tmp_path: Path) -> None:
    answers = iter(["starting", "starting", None])
    clock = FakeClock()
    wait_until("kafka", lambda: next(answers), timeout=10, log=_log(tmp_path), clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(0.5)


def test_deadline_names_process_reason_and_log(tmp_path: Path) -> None:
    log = _log(tmp_path)
    clock = FakeClock()
    with pytest.raises(StartError) as error:
        wait_until(
            "kafka", lambda: "nothing listens on 127.0.0.1:1", timeout=5, log=log, clock=clock, sleep=clock.sleep
        )
    message = str(error.value)
    assert "kafka was not ready within 5 s" in message
    assert "nothing listens on 127.0.0.1:1" in message
    assert str(log) in message and "ERROR the real cause" in message
    assert clock.now == pytest.approx(5.0)


def test_exceptions_are_not_ready_yet(tmp_path: Path) -> None:
    clock = FakeClock()

    def refuse() -> str | None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(StartError, match="ConnectionRefusedError: refused"):
        wait_until("greeter", refuse, timeout=1, log=_log(tmp_path), clock=clock, sleep=clock.sleep)


def test_a_dead_process_fails_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    with pytest.raises(StartError, match="taskmanager exited before it was ready") as error:
        wait_until(
            "taskmanager",
            lambda: "0 slots",
            timeout=60,
            log=_log(tmp_path),
            alive=lambda: False,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 0.0
    assert "ERROR the real cause" in str(error.value)


def test_a_stop_request_interrupts(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted, match="jobmanager"):
        wait_until("jobmanager", lambda: "not yet", timeout=60, log=_log(tmp_path), stop=stop)


def test_tail_of_a_missing_log() -> None:
    assert tail(Path("/nonexistent/x.log")) == "(no log file)"


def test_ports() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port) is None
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)
    assert port_open("127.0.0.1", port) is not None


def test_an_answer_from_a_dead_process_is_not_readiness(tmp_path: Path) -> None:
    # Another stack on our port answers, but the process we started has died.
    with pytest.raises(StartError, match="kafka exited right after start"):
        wait_until("kafka", lambda: None, timeout=5, log=_log(tmp_path), alive=lambda: False)
