"""A small HTTP/1.1 fault proxy between the runtime and the greeter, for the fault tests.

It forwards each POST to the greeter over a kept-alive connection (one per runtime connection, as the
runtime pools its own) and, while a fault is armed, spoils the next requests instead:
- `delay`: hold every request that long before forwarding it, for a while;
- `error`: answer 500 without forwarding (a crashing or overloaded function);
- `wrong_type`: answer 200 with an HTML page (a misrouted ingress or a captive error page);
- `reset`: forward the request, let the greeter answer, then drop the runtime's connection with a TCP
  reset instead of the reply: the work was done, the answer lost.
Every spoiled request counts in `injected`, so a test can show the fault really struck.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from stack.config import HOST

_MAX_HEAD = 64 * 1024


class FaultKind(StrEnum):
    DELAY = "delay"
    ERROR = "error"
    WRONG_TYPE = "wrong_type"
    RESET = "reset"


@dataclass
class _Armed:
    kind: FaultKind
    remaining: int  # requests still to spoil (ERROR, WRONG_TYPE, RESET)
    until: float  # monotonic end of a DELAY window
    delay_s: float


class FaultPlan:
    """What the proxy does to the next requests; thread-safe, shared by every connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: _Armed | None = None
        self.injected: Counter[FaultKind] = Counter()
        self.forwarded = 0

    def arm(self, kind: FaultKind, *, count: int = 0, delay_s: float = 0.0, for_s: float = 0.0) -> None:
        with self._lock:
            self._armed = _Armed(kind, count, time.monotonic() + for_s, delay_s)

    @property
    def armed(self) -> bool:
        with self._lock:
            armed = self._armed
            if armed is None:
                return False
            return time.monotonic() < armed.until if armed.kind is FaultKind.DELAY else armed.remaining > 0

    def next(self) -> tuple[FaultKind | None, float]:
        """The fault for the request at hand (None: pass it through) and how long to hold it first."""
        with self._lock:
            armed = self._armed
            if armed is None:
                return None, 0.0
            if armed.kind is FaultKind.DELAY and time.monotonic() < armed.until:
                self.injected[FaultKind.DELAY] += 1
                return FaultKind.DELAY, armed.delay_s
            if armed.kind is not FaultKind.DELAY and armed.remaining > 0:
                armed.remaining -= 1
                self.injected[armed.kind] += 1
                return armed.kind, 0.0
            self._armed = None
            return None, 0.0


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        upstream = http.client.HTTPConnection(HOST, self.server.upstream_port, timeout=120)
        try:
            while self._one_request(upstream):
                pass
        finally:
            upstream.close()

    def _one_request(self, upstream: http.client.HTTPConnection) -> bool:
        """Serve one request; False when the runtime closed the connection or a fault dropped it."""
        head = self._read_head()
        if head is None:
            return False
        request_line, headers = head
        method, path, _version = request_line.split(" ", 2)
        body = self.rfile.read(int(headers.get("content-length", "0")))
        kind, hold_s = self.server.plan.next()
        if hold_s:
            time.sleep(hold_s)
        if kind is FaultKind.ERROR:
            self._reply(500, "text/plain", b"injected fault\n")
            return True
        if kind is FaultKind.WRONG_TYPE:
            self._reply(200, "text/html", b"<html><body>Gateway says hello</body></html>\n")
            return True
        forwarded = {k: v for k, v in headers.items() if k in ("content-type", "accept")}
        try:
            upstream.request(method, path, body=body, headers=forwarded)
            response = upstream.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            return False  # the greeter is away: the runtime sees its connection drop, as without the proxy
        self.server.plan.forwarded += 1
        if kind is FaultKind.RESET:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        self._reply(response.status, response.getheader("content-type", ""), payload)
        return True

    def _read_head(self) -> tuple[str, dict[str, str]] | None:
        request_line = self.rfile.readline(_MAX_HEAD).decode("latin-1").rstrip("\r\n")
        if not request_line:
            return None
        headers: dict[str, str] = {}
        while line := self.rfile.readline(_MAX_HEAD).decode("latin-1").rstrip("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ValueError("the fault proxy expects Content-Length bodies, as the runtime sends")
        return request_line, headers

    def _reply(self, status: int, content_type: str, payload: bytes) -> None:
        reason = http.client.responses.get(status, "")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
        self.wfile.write(head.encode("latin-1") + payload)
        self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int, plan: FaultPlan) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        super().__init__((HOST, 0), _Connection)


class FaultProxy:
    """Listens on a free loopback port (`port`), forwards to the greeter on `upstream_port`; a context manager
    that always stops."""

    def __init__(self, upstream_port: int) -> None:
        self.plan = FaultPlan()
        self._server = _Server(upstream_port, self.plan)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
