"""Peer (c): the well-kept pair alone: uvicorn's worker under gunicorn, an ASGI callable awaiting the SDK's
handle_async. No bounds on slow clients, no 4xx checks, no metrics: what the greeter adds on top of it is
the difference between this row and the greeter's. Served by:
gunicorn -k uvicorn_worker.UvicornWorker --workers 1 --bind ADDRESS bench.peers.uvicorn_bare:app
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from statefun import RequestReplyHandler

from greeter.config.settings import Settings
from greeter.function.greeter import build_functions

Message = MutableMapping[str, Any]
Asgi = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def asgi_app(handler: RequestReplyHandler) -> Asgi:
    """The ASGI callable serving `handler` on POST /statefun, and `ready` on any other path (the readiness probe)."""

    async def app(
        scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/statefun":  # the readiness probe the benchmark waits for
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
            await send({"type": "http.response.body", "body": b"ready\n"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        reply = await handler.handle_async(body)
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % len(reply))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    return app


app = asgi_app(RequestReplyHandler(build_functions(Settings())))
