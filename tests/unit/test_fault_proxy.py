"""The fault tests' HTTP proxy does what it is armed to do, and passes everything else through untouched."""

import http.client
import http.server
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stack.config import HOST
from tests.faults.http_proxy import FaultKind, FaultProxy
from tests.support.waiting import wait_for

Connect = Callable[[FaultProxy], http.client.HTTPConnection]


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the greeter

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    upstream = http.server.ThreadingHTTPServer((HOST, 0), _Echo)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        with FaultProxy(upstream.server_address[1]) as running:
            yield running
    finally:
        upstream.shutdown()
        upstream.server_close()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Client connections to the proxy, each closed when the test ends."""
    opened: list[http.client.HTTPConnection] = []

    def open_one(proxy: FaultProxy) -> http.client.HTTPConnection:
        opened.append(http.client.HTTPConnection(HOST, proxy.port, timeout=5))
        return opened[-1]

    yield open_one
    for connection in opened:
        connection.close()


def post(connection: http.client.HTTPConnection, body: bytes = b"\x01\x02") -> tuple[int, str, bytes]:
    connection.request("POST", "/statefun", body=body, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type", ""), response.read()


def test_passes_requests_through_on_one_kept_alive_connection(proxy: FaultProxy, connect: Connect) -> None:
    connection = connect(proxy)
    assert [post(connection, bytes([n])) for n in range(3)] == [
        (200, "application/octet-stream", bytes([n])) for n in range(3)
    ]
    assert proxy.plan.forwarded == 3 and not proxy.plan.injected


@pytest.mark.parametrize(
    ("kind", "status", "content_type"), [(FaultKind.ERROR, 500, "text/plain"), (FaultKind.WRONG_TYPE, 200, "text/html")]
)
def test_spoils_exactly_the_armed_number_of_replies(
    proxy: FaultProxy, connect: Connect, kind: FaultKind, status: int, content_type: str
) -> None:
    proxy.plan.arm(kind, count=2)
    connection = connect(proxy)
    spoiled = [post(connection)[:2] for _ in range(2)]
    assert spoiled == [(status, content_type)] * 2
    assert not proxy.plan.armed
    assert post(connection) == (200, "application/octet-stream", b"\x01\x02")
    assert proxy.plan.injected == {kind: 2}
    assert proxy.plan.forwarded == 1  # the spoiled ones never reached the function


def test_reset_drops_the_connection_after_the_function_answered(proxy: FaultProxy, connect: Connect) -> None:
    proxy.plan.arm(FaultKind.RESET, count=1)
    connection = connect(proxy)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        post(connection)
    assert proxy.plan.forwarded == 1
    connection.close()
    assert post(connect(proxy))[0] == 200


def test_delay_holds_each_request_while_the_window_is_open(proxy: FaultProxy, connect: Connect) -> None:
    proxy.plan.arm(FaultKind.DELAY, delay_s=0.3, for_s=1.0)
    connection = connect(proxy)
    start = time.monotonic()
    assert post(connection)[0] == 200
    assert time.monotonic() - start >= 0.3  # a lower bound: a loaded machine only makes it longer
    wait_for("the delay window to close", lambda: not proxy.plan.armed, deadline_s=10, every=0.05)
    assert post(connection)[0] == 200
    # Passed through unheld: a held request is counted as it is held, so only the first one is.
    assert proxy.plan.injected == {FaultKind.DELAY: 1}
    assert proxy.plan.forwarded == 2
