"""uvicorn's httptools protocol with the bounds a server facing untrusted clients needs and uvicorn lacks.

uvicorn keeps a connection that never sends a byte, and a request that arrives a byte at a time, for as long
as the client likes, and puts no bound on the request line or headers. Each bound here is one setting
(greeter/config/settings.py) and is listed with its reason in docs/limits.md:
- read deadline: a request must arrive in full, head and body, within `read_timeout` of its first byte
  (empty lines before it included); trickling bytes does not extend it. 408 (a plain close when only empty
  lines came, or once an answer has started).
- idle deadline: a new connection gets the keep-alive timeout before its first byte too.
- connections: past `max_connections` per worker a new connection is answered 503 and closed at once.
- head size: a request line over `max_request_line` bytes is answered 400; a head over `max_header_bytes`, 431.

And a drain instead of uvicorn's shutdown. uvicorn closes an idle kept-alive connection the moment a graceful
shutdown begins, and one in use after its answer (`Connection: close`). Either close races a request the client
is sending on it, and the runtime's HTTP client ignores `Connection: close`: an in-place upgrade under load saw
28 calls retried, and one with a 0.5 s grace before the close still saw one. Closing a kept-alive connection
from the server side is always such a race; only the client can retire a connection safely. The runtime's pool
does, `pool_ttl` (15 s) plus up to 3 s of jitter after opening it. So a draining connection stays kept alive
and served for `drain_timeout` (the graceful timeout less DRAIN_MARGIN_S): the runtime retires it, and the
worker exits as soon as its last connection closes. What a client still holds at the deadline is closed then:
at once when idle, after its answer when in use.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("greeter.http")

DRAIN_MARGIN_S = 1.0  # of the graceful timeout, left after the drain for the last answers and the exit


@dataclass(frozen=True)
class HttpLimits:
    """The bounds BoundedHttpToolsProtocol enforces, one greeter setting each (see the module docstring)."""

    read_timeout: float
    max_connections: int
    max_request_line: int
    max_header_bytes: int
    drain_timeout: float  # how long a connection stays kept alive once the worker's graceful shutdown begins


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; uvicorn's error path then sends our answer."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a read deadline, an idle deadline, a connection cap and head-size limits."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        # When the current request's first byte came (None between requests), and the one timer that checks it.
        # The timer is not re-armed per request: when it fires it re-arms itself for a request still under way,
        # so a connection busy with many quick requests costs one timer per read_timeout, not one per request.
        self._request_since: float | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # before the current request's headers are complete
        self._in_request = False  # a request has begun (more than empty lines arrived) and not yet ended
        self._url_bytes = 0
        self._head_bytes = 0  # bytes received in the current request's head, as far as chunks tell
        self._heads_completed = 0  # on this connection: tells a chunk that held a whole request from a head's part
        self._refusal: tuple[int, str] | None = None
        self._closing_after_answer = False  # the drain ended: each request now gets its answer, then the close

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Answer 503 and close past `max_connections`; otherwise start the idle deadline now."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(503, f"over {self.limits.max_connections} connections to this worker")
            return
        # uvicorn arms the keep-alive timer only after a response: a client that connects and stays
        # silent would be kept forever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the read deadline, then uvicorn's own clean-up."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Arm the read deadline at the first byte, and answer 431 once the head passes `max_header_bytes`."""
        # From the first byte, whatever it is: llhttp skips empty lines before a request without starting
        # one, so a deadline armed only when a request begins would let a client trickle CRLFs forever.
        if self._request_since is None:
            self._start_read_deadline()
        # Only a chunk that is all head counts: not one that completes a head (with a whole request after it,
        # a chunk ends back in the head state, the next request's) nor one that starts the next request.
        counted, heads = self._in_head, self._heads_completed
        super().data_received(data)
        # Cheapest first: a chunk that held a whole request (the runtime's) completed a head.
        if self._heads_completed != heads or not (counted and self._in_head) or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.limits.max_header_bytes:
            self._answer_and_close(431, f"request head over {self.limits.max_header_bytes} bytes")

    # httptools callbacks
    def on_message_begin(self) -> None:
        """A request begins: reset the head counters; arm the read deadline if none runs (a pipelined request)."""
        super().on_message_begin()
        self._in_head, self._head_bytes, self._url_bytes = True, 0, 0
        self._in_request = True
        if self._request_since is None:  # a request pipelined behind one that just completed
            self._start_read_deadline()

    def on_url(self, url: bytes) -> None:
        """Count the target as its pieces arrive: past `max_request_line`, 400 before it is whole."""
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_request_line:
            self._refusal = (400, f"request line over {self.limits.max_request_line} bytes")
            raise _Refused
        super().on_url(url)

    def on_headers_complete(self) -> None:
        """The head is in: 431 when request line and headers together pass `max_header_bytes`."""
        self._in_head = False
        self._heads_completed += 1
        head = self._url_bytes + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head > self.limits.max_header_bytes:
            self._refusal = (431, f"request head over {self.limits.max_header_bytes} bytes")
            raise _Refused
        super().on_headers_complete()
        if self._closing_after_answer and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """Begin the drain (see the module docstring): the connection stays kept alive for the client to retire;
        at `drain_timeout` it is closed, at once when idle, after its answer when in use.
        """
        self.loop.call_later(self.limits.drain_timeout, self._end_drain)

    def _end_drain(self) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
        if cycle is None and not self._in_request:
            self.transport.close()
            return
        self._closing_after_answer = True  # a request whose head is still arriving: its cycle comes later
        if cycle is not None:
            cycle.keep_alive = False

    def on_message_complete(self) -> None:
        """The request is in: its read deadline no longer applies; reset the head counters for the next one."""
        self._request_since = None
        self._in_head, self._head_bytes, self._in_request = True, 0, False
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; a refusal raised from a callback above answers in its place."""
        status, text = self._refusal or (400, msg)
        self._answer_and_close(status, text)

    def _start_read_deadline(self) -> None:
        self._request_since = self.loop.time()
        if self._deadline_timer is None:
            self._deadline_timer = self.loop.call_at(
                self._request_since + self.limits.read_timeout, self._check_deadline
            )

    def _check_deadline(self) -> None:
        self._deadline_timer = None
        since = self._request_since
        if since is None or self.transport.is_closing():
            return  # between requests: the next first byte arms it again
        if self.loop.time() < since + self.limits.read_timeout:  # a later request than the one it was armed for
            self._deadline_timer = self.loop.call_at(since + self.limits.read_timeout, self._check_deadline)
            return
        answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        if not self._in_request or answering:
            # Nothing but empty lines came, or an answer is under way (a 413 before the body): just close.
            self.transport.close()
            return
        self._answer_and_close(408, f"request not received in full within {self.limits.read_timeout:g} s")

    def _answer_and_close(self, status: int, text: str) -> None:
        log.warning("cut off a client", extra={"status": status, "reason": text, "client": self.client})
        body = (text + "\n").encode()
        head = (
            f"HTTP/1.1 {status} {_PHRASES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


_PHRASES = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
