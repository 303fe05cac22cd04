"""The greeter as deployed: greeter-serve (gunicorn + GreeterWorker) as a real process on loopback."""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess

from greeter.function.types import SEEN_COUNT_TYPE
from greeter.protocol.harness import RuntimeHarness
from greeter.protocol.messages import build_request, typed_value
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE
from protos.generated.greeter_pb2 import SeenCount
from stack.config import REPO_ROOT
from tests.protocol.messages import greet, greetings
from tests.support.failing import BUG
from tests.support.net import free_port, wait_for_http
from tests.support.processes import popen_logged, stop_process

SERVE = Path(sys.executable).with_name("greeter-serve")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def post(self, body: bytes) -> tuple[int, str, bytes]:
        connection = self.connection()
        try:
            connection.request("POST", "/statefun", body, {"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()


def start(tmp_path: Path, workers: int = 2, serve: Sequence[str] = (str(SERVE),), **env: str) -> Server:
    """greeter-serve (or `serve`, a command taking its flags) on a free port, its metrics under `tmp_path`."""
    port = free_port()
    log = tmp_path / "greeter.log"
    process = popen_logged(
        [*serve, "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        log,
        {**os.environ, MULTIPROC_DIR_VARIABLE: str(tmp_path / "metrics"), **env},
    )
    server = Server(process, port, log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", 20, alive=lambda: process.poll() is None)
    except AssertionError:
        stop(server)
        raise AssertionError(log.read_text()) from None
    return server


def stop(server: Server) -> int:
    """Stop the server by its PID (SIGTERM, then SIGKILL to its group); its exit status."""
    return stop_process(server.process)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start(tmp_path)
    yield running
    stop(running)


def test_greets_over_http_with_state_kept_by_the_caller(server: Server) -> None:
    def send(body: bytes) -> bytes:
        status, content_type, reply = server.post(body)
        assert (status, content_type) == (200, "application/octet-stream")
        return reply

    runtime = RuntimeHarness(send=send, function_type="example/greeter")
    assert greetings(runtime.invoke("Zoë", [greet("Zoë")])) == [("Zoë", "Welcome Zoë")]
    assert greetings(runtime.invoke("Zoë", [greet("Zoë")] * 2)) == [
        ("Zoë", "Nice to see you again Zoë"),
        ("Zoë", "Third time is a charm Zoë"),
    ]


def test_connections_are_kept_alive(server: Server) -> None:
    connection = server.connection()
    body = build_request("example/greeter", "Ada", [greet("Ada")], {})
    try:
        connection.request("POST", "/statefun", body)
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        for _ in range(20):
            connection.request("POST", "/statefun", body)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            # HTTP/1.1 keeps a connection open unless the server says `close`.
            assert response.getheader("Connection") is None
        assert connection.sock is sock, "the server closed a kept-alive connection"
    finally:
        connection.close()


def test_bad_bodies_get_4xx_never_500(server: Server) -> None:
    assert server.post(b"\xff" * 100)[0] == 400
    assert server.post(b"")[0] == 400
    assert server.post(build_request("example/nobody", "x", []))[0] == 404


def test_a_function_that_raises_is_answered_500_and_counted(tmp_path: Path) -> None:
    # A release with a bug (tests/support/failing.py), served as greeter-serve serves the greeter: the 500 goes out
    # on the worker's ASGI route, and /metrics counts it.
    server = start(
        tmp_path, workers=1, serve=[sys.executable, "-m", "tests.support.failing"], PYTHONPATH=str(REPO_ROOT)
    )
    try:
        runtime = RuntimeHarness(send=lambda body: server.post(body)[2], function_type="example/greeter")
        assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Welcome Ada")]
        returning = build_request(
            "example/greeter",
            "Ada",
            [greet("Ada")],
            {"seen_count": typed_value(SEEN_COUNT_TYPE.typename, SeenCount(seen=1).SerializeToString())},
        )
        assert server.post(returning) == (
            500,
            "text/plain; charset=utf-8",
            b"the function failed: see the greeter's log\n",
        )
        assert 'greeter_failed_requests_total{status="500"} 1.0' in scrape(server)
    finally:
        stop(server)
    assert BUG in server.log.read_text()  # with its traceback, in the greeter's log


def scrape(server: Server) -> str:
    connection = server.connection()
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_metrics_are_summed_over_workers(server: Server) -> None:
    body = build_request("example/greeter", "Ada", [greet("Ada")], {})
    for _ in range(30):
        server.post(body)  # a new connection each time: spread over both workers
    # The worker that answers flushes its own counts; the other one's arrive within its flush period.
    deadline = time.monotonic() + 10
    while "greeter_missing_state_replies_total 30.0" not in (text := scrape(server)):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def test_metrics_hold_the_memory_of_the_master_and_each_worker(server: Server) -> None:
    deadline = time.monotonic() + 10  # the second worker may still be booting when the first answers /readyz
    while True:
        text = scrape(server)
        lines = [line for line in text.splitlines() if line.startswith("greeter_process_resident_memory_bytes{")]
        roles = sorted(line.split('role="')[1].split('"')[0] for line in lines)
        if len(roles) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pids = {int(line.split('pid="')[1].split('"')[0]) for line in lines}
    assert roles == ["master", "worker", "worker"], lines
    assert server.process.pid in pids  # greeter-serve's own process is gunicorn's master
    assert all(float(line.rsplit(" ", 1)[1]) > 10_000_000 for line in lines), lines  # a worker holds tens of MB


def test_a_sigterm_worker_writes_its_last_metrics_before_it_exits(tmp_path: Path) -> None:
    # The periodic flush is made an hour long: what reaches the files can only come from the exit flush.
    serve = (
        "import sys, greeter.web.metrics, greeter.server.serve; greeter.web.metrics.FLUSH_SECONDS = 3600.0; "
        "sys.exit(greeter.server.serve.main(sys.argv[1:]))"
    )
    directory = tmp_path / "metrics"
    directory.mkdir()
    port = free_port()
    log = tmp_path / "greeter.log"
    process = popen_logged(
        [sys.executable, "-c", serve, "--workers", "1", "--bind", f"127.0.0.1:{port}"],
        log,
        {**os.environ, MULTIPROC_DIR_VARIABLE: str(directory)},
    )
    server = Server(process, port, log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", 20, alive=lambda: process.poll() is None)
        runtime = RuntimeHarness(send=lambda body: server.post(body)[2], function_type="example/greeter")
        runtime.invoke("Ada", [greet("Ada")] * 3)  # asks for state, then 3 messages: 2 requests
        runtime.invoke("Ada", [greet("Ada")])  # 1 more request
        assert stop(server) == 0, log.read_text()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        assert registry.get_sample_value("greeter_request_seconds_count") == 3.0, log.read_text()
        assert registry.get_sample_value("greeter_missing_state_replies_total") == 1.0
        assert registry.get_sample_value("greeter_invocations_per_request_sum") == 4.0
        assert registry.get_sample_value("greeter_invocations_per_request_bucket", {"le": "5.0"}) == 2.0
    finally:
        stop(server)


def test_oversized_body_is_413(tmp_path: Path) -> None:
    server = start(tmp_path, workers=1, GREETER_MAX_REQUEST_BYTES="2048")
    try:
        assert server.post(b"\x00" * 4096)[0] == 413
        assert server.post(build_request("example/greeter", "Ada", [greet("Ada")], {}))[0] == 200
    finally:
        stop(server)


def worker_pids(server: Server, count: int = 2) -> list[str]:
    """The PIDs of the master's `count` workers, once all have forked (the last may still be booting)."""
    workers: list[str] = []
    deadline = time.monotonic() + 20
    while len(workers) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
        workers = children.stdout.split()
    assert len(workers) == count
    return workers


def test_sigterm_stops_gracefully_and_leaves_no_worker(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        workers = worker_pids(server)
        assert stop(server) == 0, "gunicorn did not exit cleanly on SIGTERM"  # a SIGKILL fallback gives -9
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived its master"
    finally:
        stop(server)


def connections_held(server: Server, pid: str) -> int:
    """How many established connections to the server's port the process `pid` holds (Linux /proc)."""
    port = f":{server.port:04X}"
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state, *rest = line.split()[1:]
        if local.endswith(port) and state == "01":
            established.add(f"socket:[{rest[5]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # an fd closed while listed
            held += os.readlink(fd) in established
    return held


def test_a_graceful_stop_logs_no_error(tmp_path: Path) -> None:
    # Each worker used to log "Error while closing socket [Errno 9] Bad file descriptor" at every SIGTERM: its
    # listening socket was closed twice on the way out. An operator must be able to read any "Error" as one.
    # The connections below are still held at the drain's end (graceful timeout 3 s, drain 2 s): closed then.
    server = start(tmp_path, GREETER_GRACEFUL_TIMEOUT="3")
    body = build_request("example/greeter", "Ada", [greet("Ada")], {})
    connections: list[http.client.HTTPConnection] = []
    try:
        workers = worker_pids(server)
        # New connections until both workers have answered one; all stay open (kept alive, as the runtime's are).
        while not all(connections_held(server, pid) for pid in workers):
            assert len(connections) < 200, "one worker took every connection"
            connection = server.connection()
            connections.append(connection)
            connection.request("POST", "/statefun", body)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        status = stop(server)
    finally:
        for connection in connections:
            connection.close()
        stop(server)
    log = server.log.read_text()
    assert status == 0, log
    assert "Shutting down: Master" in log, log  # the log is the whole stop, not cut short
    assert "[ERROR]" not in log and '"level": "ERROR"' not in log, log
    assert "Error" not in log, log


def test_a_bad_setting_fails_start_up_naming_the_variable() -> None:
    result = subprocess.run(
        [str(SERVE), "--bind", "127.0.0.1:1"],
        env={**os.environ, "GREETER_SEEN_COUNT_TTL": "soon"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "GREETER_SEEN_COUNT_TTL='soon' is not an integer" in result.stderr


def raw_exchange(server: Server, payload: bytes) -> bytes:
    """Send raw bytes and read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        sock.settimeout(1.0)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_malformed_http_is_400(server: Server) -> None:
    reply = raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    first = build_request("example/greeter", "Ada", [greet("Ada")], {})
    request = b"POST /statefun HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
    reply = raw_exchange(server, request + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.index(b"application/octet-stream") < reply.index(b"ok\n")


def test_chunked_request_bodies_are_read(server: Server) -> None:
    body = build_request("example/greeter", "Ada", [greet("Ada")], {})
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = b"POST /statefun HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(server, request + chunked)
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b"content-type: application/octet-stream" in reply.lower()


def test_a_draining_worker_serves_a_kept_alive_connection_until_its_client_closes_it(tmp_path: Path) -> None:
    # An in-place upgrade under load saw the runtime retry calls: the old worker closed its kept-alive
    # connections when its graceful shutdown began (at once when idle, or after a 0.5 s grace), racing requests
    # the runtime was sending on them. Now the connection stays kept alive until the client retires it.
    server = start(tmp_path, workers=1, GREETER_GRACEFUL_TIMEOUT="120")
    body = build_request("example/greeter", "Ada", [greet("Ada")], {})
    connection = server.connection()
    try:
        connection.request("POST", "/statefun", body)
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection") != "close"  # kept alive, now idle
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "Shutting down" not in server.log.read_text():  # the worker's shutdown has begun
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.005)
        for _ in range(3):  # served, and still kept alive
            connection.request("POST", "/statefun", body)
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            assert answer.getheader("Connection") != "close"
            assert answer.getheader("Content-Type") == "application/octet-stream" and answer.read()  # FromFunction
        connection.close()
        # The client retired its connection: the worker exits then, not at the end of its 119 s drain.
        assert server.process.wait(timeout=60) == 0, server.log.read_text()
    finally:
        connection.close()
        stop(server)
