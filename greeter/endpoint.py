"""POST /statefun over HTTP: one answer for every outcome, whichever server carries the request.

`StatefunEndpoint` turns a body into an `Answer` (200 with the reply, or a 4xx naming what was wrong) and
counts it in the metrics; it is the one place that answers 413 too. Two thin adapters carry it: the ASGI
route in greeter/asgi.py (the server's running loop, the SDK's handle_async) and `StatefunWsgi` here, which
puts it in front of the Flask app so that `greeter.app:app` serves /statefun under any WSGI server.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .dispatch import Dispatcher, InvalidRequest, Reply, UnknownFunction
from .metrics import GreeterMetrics

log = logging.getLogger("greeter.endpoint")

PATH = "/statefun"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Answer(NamedTuple):
    """One HTTP answer to a /statefun request, whichever server sends it."""

    status: int
    reason: str  # the status line's phrase
    content_type: str
    body: bytes
    close: bool = False  # the connection is closed after it (the rest of the request is not read)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The response headers, the same whichever adapter sends the answer."""
        headers = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        if self.status == 405:
            headers.append(("Allow", "POST"))
        if self.close:
            headers.append(("Connection", "close"))
        return headers


def _plain(status: int, reason: str, text: str, close: bool = False) -> Answer:
    return Answer(status, reason, "text/plain; charset=utf-8", (text + "\n").encode("utf-8"), close)


class StatefunEndpoint:
    """POST /statefun: a body in, an Answer out (200, or a 4xx naming the fault), counted in the metrics."""

    def __init__(self, dispatcher: Dispatcher, metrics: GreeterMetrics, max_bytes: int) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self.max_bytes = max_bytes

    def refused(self, answer: Answer) -> Answer:
        """Count the 4xx `answer` in greeter_rejected_requests, by status, and return it."""
        self._metrics.rejected.labels(status=str(answer.status)).inc()
        return answer

    def method_not_allowed(self) -> Answer:
        """405 for any method but POST (the adapters add the Allow header)."""
        return self.refused(_plain(405, "Method Not Allowed", "use POST"))

    def too_large(self) -> Answer:
        """413 for a body over `max_bytes`; the connection is closed, as the rest of the body is not read."""
        return self.refused(_plain(413, "Request Entity Too Large", f"body over {self.max_bytes} bytes", close=True))

    def bad_length(self) -> Answer:
        """400 for a Content-Length that is not a number; the connection is closed.
        Only StatefunWsgi needs it: under the worker, llhttp refuses such a header before the app sees it.
        """
        return self.refused(_plain(400, "Bad Request", "Content-Length is not a number", close=True))

    def answer(self, body: bytes) -> Answer:
        """For a caller with no running event loop."""
        started = time.perf_counter()
        try:
            reply = self._dispatcher.handle(body)
        except (InvalidRequest, UnknownFunction) as error:
            return self._refusal(error)
        return self._served(reply, started)

    async def answer_async(self, body: bytes) -> Answer:
        """For a caller on the server's running loop."""
        started = time.perf_counter()
        try:
            reply = await self._dispatcher.handle_async(body)
        except (InvalidRequest, UnknownFunction) as error:
            return self._refusal(error)
        return self._served(reply, started)

    def _refusal(self, error: InvalidRequest | UnknownFunction) -> Answer:
        if isinstance(error, UnknownFunction):
            log.error("request for a function this service does not serve", extra={"function": error.typename})
            return self.refused(_plain(404, "Not Found", str(error)))
        log.warning("refused a request", extra={"reason": str(error)})
        return self.refused(_plain(400, "Bad Request", str(error)))

    def _served(self, reply: Reply, started: float) -> Answer:
        self._metrics.answered(reply.invocations, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "served a batch",
                extra={"address": f"{reply.typename}/{reply.address_id}", "invocations": reply.invocations},
            )
        return Answer(200, "OK", "application/octet-stream", reply.body)


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
        start_response(f"{answer.status} {answer.reason}", answer.headers)
        return [answer.body]

    def _answer(self, environ: dict[str, Any]) -> Answer:
        endpoint = self._endpoint
        if environ["REQUEST_METHOD"] != "POST":
            return endpoint.method_not_allowed()
        stream = environ["wsgi.input"]
        length_header = environ.get("CONTENT_LENGTH")
        if length_header:
            try:
                length = int(length_header)
            except ValueError:
                return endpoint.bad_length()
            if length > endpoint.max_bytes:
                return endpoint.too_large()
            body = bytes(stream.read(length))
        else:
            body = bytes(stream.read(endpoint.max_bytes + 1))  # chunked: one byte past the limit shows it
            if len(body) > endpoint.max_bytes:
                return endpoint.too_large()
        return endpoint.answer(body)
