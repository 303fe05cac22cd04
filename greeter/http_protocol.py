"""uvicorn's httptools protocol with the bounds a server facing untrusted clients needs and uvicorn lacks.

uvicorn keeps a connection that never sends a byte, and a request that arrives a byte at a time, for as long
as the client likes, and puts no bound on the request line or headers. Each bound here is one setting
(greeter/settings.py) and is listed with its reason in docs/limits.md:
- read deadline: a request must arrive in full, head and body, within `read_timeout` of its first byte
  (empty lines before it included); trickling bytes does not extend it. 408 (a plain close when only empty
  lines came, or once an answer has started).
- idle deadline: a new connection gets the keep-alive timeout before its first byte too.
- connections: past `max_connections` per worker a new connection is answered 503 and closed at once.
- head size: a request line over `max_request_line` bytes is answered 400; a head over `max_header_bytes`, 431.

And one gentler shutdown: uvicorn closes an idle connection the moment a graceful shutdown starts, dropping a
request the runtime had just sent on it and the worker had not read yet (an in-place upgrade under load saw 28
such calls retried). Here an idle connection gets SHUTDOWN_GRACE_S to deliver one: it is served, with
`Connection: close`, and the connection closes after its answer.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("greeter.http")

SHUTDOWN_GRACE_S = 0.5  # loopback or a cluster network delivers a request already sent well within this


@dataclass(frozen=True)
class HttpLimits:
    """The bounds BoundedHttpToolsProtocol enforces, one greeter setting each (see the module docstring)."""

    read_timeout: float
    max_connections: int
    max_request_line: int
    max_header_bytes: int


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
        self._draining = False  # a graceful shutdown began: each request now gets its answer, then the close

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
        if self.transport.is_closing() or not (counted and self._in_head) or self._heads_completed != heads:
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
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, except that an idle connection closes after SHUTDOWN_GRACE_S, not at once:
        a request already on its way is served (and the connection closed after it) instead of dropped.
        """
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(SHUTDOWN_GRACE_S, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False  # a request came in the grace: closed after its answer

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
