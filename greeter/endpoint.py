"""POST /statefun as a lean WSGI layer in front of Flask's own dispatch.

The runtime calls this path thousands of times a second, one request per address batch; Flask's routing
and request objects cost about 145 us per call here, more than the function itself. So this path is
answered at the WSGI layer (Flask's documented `app.wsgi_app` middleware hook) and every other path
falls through to the Flask app.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .dispatch import Dispatcher, InvalidRequest, UnknownFunction
from .metrics import GreeterMetrics

log = logging.getLogger("greeter.endpoint")

PATH = "/statefun"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_OCTET_STREAM = [("Content-Type", "application/octet-stream")]


class BodyTooLarge(Exception):
    pass


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    stream = environ["wsgi.input"]
    length_header = environ.get("CONTENT_LENGTH")
    if length_header:
        length = int(length_header)
        if length > limit:
            raise BodyTooLarge
        return bytes(stream.read(length))
    body = stream.read(limit + 1)  # chunked: read one byte past the limit to notice an oversized body
    if len(body) > limit:
        raise BodyTooLarge
    return bytes(body)


class StatefunEndpoint:
    def __init__(self, fallback: WsgiApp, dispatcher: Dispatcher, metrics: GreeterMetrics, max_bytes: int):
        self._fallback = fallback
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self._fallback(environ, start_response)
        if environ["REQUEST_METHOD"] != "POST":
            return self._plain(start_response, "405 Method Not Allowed", "use POST", [("Allow", "POST")])
        started = time.perf_counter()
        try:
            body = _read_body(environ, self._max_bytes)
        except BodyTooLarge:
            return self._plain(start_response, "413 Request Entity Too Large", f"body over {self._max_bytes} bytes")
        except ValueError:
            return self._plain(start_response, "400 Bad Request", "Content-Length is not a number")
        try:
            reply = self._dispatcher.handle(body)
        except InvalidRequest as error:
            log.warning("refused a request", extra={"reason": str(error)})
            return self._plain(start_response, "400 Bad Request", str(error))
        except UnknownFunction as error:
            log.error("request for a function this service does not serve", extra={"function": error.typename})
            return self._plain(start_response, "404 Not Found", str(error))
        self._metrics.answered(reply.invocations, time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "served a batch",
                extra={"address": f"{reply.typename}/{reply.address_id}", "invocations": reply.invocations},
            )
        start_response("200 OK", [*_OCTET_STREAM, ("Content-Length", str(len(reply.body)))])
        return [reply.body]

    def _plain(
        self,
        start_response: Callable[..., Any],
        status: str,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        self._metrics.rejected.labels(status=status[:3]).inc()
        body = (reason + "\n").encode("utf-8")
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *(headers or []),
            ],
        )
        return [body]
