"""GreeterWorker: gunicorn's process model around uvicorn's worker (httptools + uvloop), with bounds.

Why uvicorn: the runtime pools connections and sends one small request per address batch; gunicorn's `sync`
worker closes every connection (the runtime then fails and retries deliveries) and parses HTTP in Python.
uvicorn keeps connections alive, parses with llhttp and runs the SDK's handler on its own loop.
gunicorn still owns sockets, workers, signals, timeouts and TLS settings.

What this class adds: it serves the greeter (greeter/server/serve.py's GreeterServer hands it the settings and the
app) through the ASGI front in greeter/server/asgi.py, speaks HTTP through BoundedHttpToolsProtocol (read deadline,
idle deadline, connection cap, head limits, drain), and puts a deadline on TLS handshakes, which uvicorn
leaves at asyncio's 60 s.
"""

import asyncio
import functools
import os
import signal
import socket
import sys
from typing import Any, ClassVar

import uvloop
from uvicorn_worker import UvicornWorker

from greeter.server.asgi import GreeterAsgi
from greeter.server.bounded_http import DRAIN_MARGIN_S, BoundedHttpToolsProtocol, HttpLimits
from greeter.server.serve import GreeterServer


class HandshakeBoundedLoop(uvloop.Loop):
    """uvloop, with a deadline on every TLS handshake of the servers it creates (uvicorn passes none)."""

    def __init__(self, handshake_timeout: float) -> None:
        super().__init__()
        self.handshake_timeout = handshake_timeout

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        """Create the server with `handshake_timeout` as its TLS handshake deadline, unless the caller gave one."""
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
        return await super().create_server(*args, **kwargs)


def _exit_after_shutdown(signum: int, frame: object) -> None:
    sys.exit(0)


def _plain_listener(listener: Any) -> socket.socket:
    """One of gunicorn's listeners as a plain socket on a duplicate fd; gunicorn's listener object is closed.

    uvicorn's server closes its listeners at shutdown: libuv closes the fd, then uvloop detaches a plain
    socket from it but calls close() on any other object. gunicorn's listener object is another object: its
    close() found the fd gone and logged "Error while closing socket [Errno 9] Bad file descriptor" in every
    worker at every stop. Handed a plain socket, the fd has one owner and is closed once.
    """
    plain = socket.socket(fileno=os.dup(listener.fileno()))
    listener.close()
    return plain


class GreeterWorker(UvicornWorker):  # type: ignore[misc]
    """gunicorn's worker running uvicorn, with the greeter's ASGI front and HTTP bounds (see the module docstring)."""

    # No lifespan events: the app needs no start-up hook (it was built and self-tested in the master). No
    # X-Forwarded-* rewriting (proxy_headers): the runtime calls the greeter directly, and the middleware costs
    # every request. No access log: /metrics counts requests (gunicorn's accesslog is off too).
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "http": "httptools",
        "lifespan": "off",
        "ws": "none",
        "server_header": False,
        "proxy_headers": False,
        "access_log": False,
    }

    def init_signals(self) -> None:
        """Exit through SystemExit on the SIGTERM/SIGINT uvicorn re-raises after shutdown, so worker_exit runs."""
        super().init_signals()
        # uvicorn shuts down on SIGTERM/SIGINT, then raises the signal again for the handler it found. The
        # default handler would end the process there and then, skipping gunicorn's worker_exit hook (the
        # last metrics flush); this one exits through SystemExit, so the hook runs.
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, _exit_after_shutdown)

    def run(self) -> None:
        """Serve the greeter through GreeterAsgi, with the HTTP bounds and deadlines of the server's Settings, on a
        HandshakeBoundedLoop (UvicornWorker.run is the same with uvicorn's own loop).
        """
        server = self.app
        if not isinstance(server, GreeterServer):
            raise TypeError(f"GreeterWorker serves greeter-serve's GreeterServer, not {type(server).__name__}")
        settings = server.settings
        limits = HttpLimits(
            read_timeout=settings.read_timeout_seconds,
            max_connections=settings.max_connections,
            max_request_line=settings.max_request_line_bytes,
            max_header_bytes=settings.max_header_bytes,
            drain_timeout=max(settings.graceful_timeout_seconds - DRAIN_MARGIN_S, 0.0),
        )
        self.config.http = functools.partial(BoundedHttpToolsProtocol, limits=limits)
        # Connections still open at SIGTERM are drained (greeter/server/bounded_http.py) within the graceful timeout.
        self.config.timeout_graceful_shutdown = settings.graceful_timeout_seconds
        self.config.timeout_keep_alive = settings.keepalive_seconds
        self.wsgi = GreeterAsgi(server.service.flask_app, server.service.endpoint)
        # Plain sockets, each closed once at shutdown (see _plain_listener); gunicorn has no type hints.
        self.sockets = [_plain_listener(listener) for listener in self.sockets]  # type: ignore[has-type]
        loop = functools.partial(HandshakeBoundedLoop, handshake_timeout=settings.read_timeout_seconds)
        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(self._serve())
