"""The ASGI front the greeter's worker serves: POST /statefun on the running loop, the Flask app for the rest.

/statefun runs the SDK's request-reply handler (greeter/protocol) through StatefunEndpoint on the worker's own
event loop, with no thread hop and no per-request loop. Every other path (/healthz, /readyz, /metrics) goes to
the Flask app through a2wsgi's WSGI adapter, in its thread pool.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask

from greeter.web.endpoint import PATH, StatefunEndpoint

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away (or was cut off at its read deadline) before its body arrived in full."""


async def _read_rest(first: MutableMapping[str, Any], receive: Receive, limit: int) -> bytes | None:
    """The whole body from its `first` message on, or None once it passes `limit` (what was read so far is
    dropped). Awaited only for a body in several messages: the runtime's arrive in one, read in the caller.
    """
    message = first
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bytes(value)
    return None


class GreeterAsgi:
    """The ASGI app the worker serves: POST /statefun on the running loop, every other path through Flask."""

    def __init__(self, flask_app: Flask, endpoint: StatefunEndpoint) -> None:
        self._endpoint = endpoint
        # The probes and /metrics are rare and quick: two threads are plenty and keep a worker small.
        self._fallback = WSGIMiddleware(flask_app, workers=2)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request: /statefun through the endpoint, any other path or scope through Flask.
        A client that disconnects before its body is in gets no answer. (One coroutine deep on purpose: each
        await of a helper costs the hot path a frame.)
        """
        if scope["type"] != "http" or scope["path"] != PATH:
            await self._fallback(scope, receive, send)  # type: ignore[arg-type]
            return
        endpoint = self._endpoint
        refusal = endpoint.refusal_before_body(scope["method"], _content_length(scope))
        if refusal is not None:
            answer = refusal
        else:
            message = await receive()
            body: bytes | None = message.get("body", b"")
            if message.get("more_body", False) or message["type"] != "http.request":
                try:
                    body = await _read_rest(message, receive, endpoint.max_bytes)
                except _Disconnected:
                    return
            if body is None or len(body) > endpoint.max_bytes:
                answer = endpoint.too_large()
            else:
                answer = await endpoint.answer_async(body)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
