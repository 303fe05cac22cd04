"""POST /statefun over HTTP: one answer for every outcome, whichever server carries the request.

Two servers carry it, and both stay. The WSGI route (`StatefunWsgi` here, in front of the Flask app) is the
contract: `greeter.app:app` serves /statefun under any WSGI server, and a test client can call it. The ASGI
route (greeter/server/asgi.py) is the fast path greeter-serve's worker takes: the SDK's handler on the worker's
running loop, no thread hop. `StatefunEndpoint` is what they share: the checks made before a body is read
(`refusal_before_body`: 405, 413 by the declared length, 400 for a length that is not a number), the 413 for a
body that grew past the limit, and the answer to a body (200 with the reply, a 4xx naming what was wrong, or a
500 when the function raised), each counted in the metrics. The adapters only move bytes.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from greeter.protocol.dispatch import Dispatcher, InvalidRequest, Reply, UnknownFunction
from greeter.web.metrics import GreeterMetrics

log = logging.getLogger("greeter.web.endpoint")

PATH = "/statefun"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Answer(NamedTuple):
    """One HTTP answer to a /statefun request, whichever server sends it."""

    status: int
    reason: str  # the status line's phrase
    content_type: bytes
    body: bytes
    close: bool = False  # the connection is closed after it (the rest of the request is not read)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers as ASGI sends them (lower-case names, bytes), the same whichever adapter sends
        the answer: built once per request on the hot path, so in the form the fast one sends as is.
        """
        headers = [(b"content-type", self.content_type), (b"content-length", b"%d" % len(self.body))]
        if self.status == 405:
            headers.append((b"allow", b"POST"))
        if self.close:
            headers.append((b"connection", b"close"))
        return headers


def _plain(status: int, reason: str, text: str, close: bool = False) -> Answer:
    return Answer(status, reason, b"text/plain; charset=utf-8", (text + "\n").encode("utf-8"), close)


class StatefunEndpoint:
    """POST /statefun: a body in, an Answer out (200, a 4xx naming the fault, or 500), counted in the metrics."""

    def __init__(self, dispatcher: Dispatcher, metrics: GreeterMetrics, max_bytes: int) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self.max_bytes = max_bytes

    def refused(self, answer: Answer) -> Answer:
        """Count the 4xx `answer` in greeter_rejected_requests, by status, and return it."""
        self._metrics.rejected.labels(status=str(answer.status)).inc()
        return answer

    def refusal_before_body(self, method: str, content_length: bytes | str | None) -> Answer | None:
        """The answer to a request refused before its body is read, or None to read the body: 405 for a method
        other than POST, 400 for a Content-Length that is not a number (under the worker llhttp refuses one
        before the app sees it), 413 for one over `max_bytes`.
        """
        if method != "POST":
            return self.refused(_plain(405, "Method Not Allowed", "use POST"))
        if content_length is None:
            return None
        try:
            declared = int(content_length)
        except ValueError:
            declared = -1
        if declared < 0:
            return self.refused(_plain(400, "Bad Request", "Content-Length is not a number", close=True))
        return self.too_large() if declared > self.max_bytes else None

    def too_large(self) -> Answer:
        """413 for a body over `max_bytes`; the connection is closed, as the rest of the body is not read."""
        return self.refused(_plain(413, "Request Entity Too Large", f"body over {self.max_bytes} bytes", close=True))

    def answer(self, body: bytes) -> Answer:
        """Answer one request body, counting it in the metrics; for a caller with no running event loop."""
        started = time.perf_counter()
        try:
            reply = self._dispatcher.handle(body)
        except (InvalidRequest, UnknownFunction) as error:
            return self._refusal(error)
        except Exception:
            return self._failed()
        return self._served(reply, started)

    async def answer_async(self, body: bytes) -> Answer:
        """Answer one request body, counting it in the metrics; for a caller on the server's running loop."""
        started = time.perf_counter()
        try:
            reply = await self._dispatcher.handle_async(body)
        except (InvalidRequest, UnknownFunction) as error:
            return self._refusal(error)
        except Exception:
            return self._failed()
        return self._served(reply, started)

    def _refusal(self, error: InvalidRequest | UnknownFunction) -> Answer:
        if isinstance(error, UnknownFunction):
            log.error("request for a function this service does not serve", extra={"function": error.typename})
            return self.refused(_plain(404, "Not Found", str(error)))
        log.warning("refused a request", extra={"reason": str(error)})
        return self.refused(_plain(400, "Bad Request", str(error)))

    def _failed(self) -> Answer:
        """500 for a request the function raised on (called in the except block: the traceback is logged), counted
        in greeter_failed_requests. Answered here rather than by the server, so both routes answer and count it
        alike; the body names no detail of the error.
        """
        log.exception("request failed")
        answer = _plain(500, "Internal Server Error", "the function failed: see the greeter's log")
        self._metrics.failed.labels(status=str(answer.status)).inc()
        return answer

    def _served(self, reply: Reply, started: float) -> Answer:
        self._metrics.answered(reply.invocations, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "served a batch",
                extra={"address": f"{reply.typename}/{reply.address_id}", "invocations": reply.invocations},
            )
        return Answer(200, "OK", b"application/octet-stream", reply.body)


class StatefunWsgi:
    """The WSGI adapter: POST /statefun answered by the endpoint, every other path by `fallback` (Flask)."""

    def __init__(self, fallback: WsgiApp, endpoint: StatefunEndpoint) -> None:
        self._fallback = fallback
        self._endpoint = endpoint

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point: /statefun answered here (any method), every other path by `fallback`."""
        if environ.get("PATH_INFO") != PATH:
            return self._fallback(environ, start_response)
        answer = self._answer(environ)
        # WSGI wants str; names in their usual case (Content-Type), as a WSGI server writes them as given.
        headers = [(name.decode("latin-1").title(), value.decode("latin-1")) for name, value in answer.headers]
        start_response(f"{answer.status} {answer.reason}", headers)
        return [answer.body]

    def _answer(self, environ: dict[str, Any]) -> Answer:
        endpoint = self._endpoint
        length = environ.get("CONTENT_LENGTH") or None
        refusal = endpoint.refusal_before_body(environ["REQUEST_METHOD"], length)
        if refusal is not None:
            return refusal
        stream = environ["wsgi.input"]
        # Without a length (chunked), one byte past the limit shows a body over it.
        body = bytes(stream.read(int(length) if length else endpoint.max_bytes + 1))
        return endpoint.too_large() if len(body) > endpoint.max_bytes else endpoint.answer(body)
