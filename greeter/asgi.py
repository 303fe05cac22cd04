"""The ASGI front the greeter's worker serves: POST /statefun on the running loop, the Flask app for the rest.

/statefun awaits the SDK's RequestReplyHandler.handle_async through StatefunEndpoint on the worker's own
event loop, with no thread hop and no per-request loop. Every other path (/healthz, /readyz, /metrics) goes to
the Flask app through a2wsgi's WSGI adapter, in its thread pool.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask

from .endpoint import PATH, Answer, StatefunEndpoint

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away (or was cut off at its read deadline) before its body arrived in full."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` (what was read so far is dropped)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value)  # llhttp has already refused a Content-Length that is not a number
    return None


class GreeterAsgi:
    """The ASGI app the worker serves: POST /statefun on the running loop, every other path through Flask."""

    def __init__(self, flask_app: Flask, endpoint: StatefunEndpoint) -> None:
        self._endpoint = endpoint
        # The probes and /metrics are rare and quick: two threads are plenty and keep a worker small.
        self._fallback = WSGIMiddleware(flask_app, workers=2)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request: /statefun through the endpoint, any other path or scope through Flask.
        A client that disconnects before its body is in gets no answer.
        """
        if scope["type"] != "http" or scope["path"] != PATH:
            await self._fallback(scope, receive, send)  # type: ignore[arg-type]
            return
        try:
            answer = await self._answer(scope, receive)
        except _Disconnected:
            return
        await _send(send, answer)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        endpoint = self._endpoint
        if scope["method"] != "POST":
            return endpoint.method_not_allowed()
        declared = _declared_length(scope)
        if declared is not None and declared > endpoint.max_bytes:
            return endpoint.too_large()  # before a byte of the body is read
        body = await _read_body(receive, endpoint.max_bytes)
        if body is None:
            return endpoint.too_large()
        return await endpoint.answer_async(body)


async def _send(send: Send, answer: Answer) -> None:
    headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
    if answer.status == 405:
        headers.append((b"allow", b"POST"))
    if answer.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
