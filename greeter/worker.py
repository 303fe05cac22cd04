"""KeepAliveWorker: a gunicorn worker that keeps connections open and parses HTTP with httptools (llhttp).

Why: the runtime pools connections and sends one small request per address batch. gunicorn's `sync`
worker closes every connection (the runtime then fails and retries deliveries), and its pure-Python HTTP
parsing costs more than the function. This worker serves each connection on an asyncio loop, parses with
llhttp, and calls the WSGI app synchronously, one request at a time, like `sync` does: the function is
CPU-bound, so concurrency within a worker would not help. gunicorn still owns sockets, workers, signals,
timeouts and TLS settings.
"""

import asyncio
import io
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httptools
import uvloop
from gunicorn.sock import ssl_context
from gunicorn.workers.base import Worker

from .settings import load_settings
from .wsgi_http import render_response, wsgi_environ

_TICK_SECONDS = 1.0


class _Connection(asyncio.Protocol):
    """One client connection: parse requests as bytes arrive, answer each in order."""

    def __init__(self, worker: "KeepAliveWorker") -> None:
        self._worker = worker
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self.busy = False
        self.idle_since = 0.0
        self._server: Any = None
        self._peer: Any = None
        self._url_scheme = "http"

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server = transport.get_extra_info("sockname")
        self._peer = transport.get_extra_info("peername")
        self._url_scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.idle_since = time.monotonic()
        self._worker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply_and_close(b"501 Not Implemented", b"protocol upgrades are not supported\n")
        except httptools.HttpParserError as error:
            self._reply_and_close(b"400 Bad Request", f"malformed HTTP request: {error}\n".encode())

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.busy = True
        self._url, self._headers, self._body, self._body_size, self._too_large = b"", [], [], 0, False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue" and self._transport:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._worker.max_body_bytes:
            self._too_large = True  # keep parsing, drop the bytes: the request is answered 413
            self._body.clear()
        elif not self._too_large:
            self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = self._parser.should_keep_alive() and self._worker.alive
        if self._too_large:
            transport.write(render_response(b"413 Request Entity Too Large", [], [b"body too large\n"], False))
            transport.close()
            return
        parsed = httptools.parse_url(self._url)
        path = parsed.path.decode("latin-1")
        environ = wsgi_environ(
            method=self._parser.get_method().decode("latin-1"),
            path=unquote(path) if "%" in path else path,
            query=(parsed.query or b"").decode("latin-1"),
            http_version=self._parser.get_http_version(),
            headers=self._headers,
            body=io.BytesIO(b"".join(self._body)),
            server=self._server,
            peer=self._peer,
            url_scheme=self._url_scheme,
        )
        transport.write(self._worker.call_app(environ, keep_alive))
        self._worker.count_request()
        self.busy = False
        if keep_alive:
            self.idle_since = time.monotonic()
        else:
            transport.close()

    def close_if_idle(self, idle_for: float = 0.0) -> None:
        if not self.busy and self._transport is not None and time.monotonic() - self.idle_since >= idle_for:
            self._transport.close()

    def _reply_and_close(self, status: bytes, body: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(render_response(status, [], [body], False))
            self._transport.close()


class KeepAliveWorker(Worker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[_Connection] = set()
        self.max_body_bytes = 0
        self._served = 0

    def run(self) -> None:
        self.max_body_bytes = load_settings().max_request_bytes
        uvloop.run(self._serve())

    def call_app(self, environ: dict[str, Any], keep_alive: bool) -> bytes:
        response: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            response["status"], response["headers"] = status, headers
            return lambda _data: None

        try:
            chunks = self.wsgi(environ, start_response)
            try:
                body = list(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except Exception:
            self.log.exception("the app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return render_response(b"500 Internal Server Error", [], [b"internal error\n"], False)
        return render_response(response["status"].encode("latin-1"), response["headers"], body, keep_alive)

    def count_request(self) -> None:
        self._served += 1
        if self.max_requests and self._served >= self.max_requests:
            self.log.info("autorestarting worker after %s requests", self._served)
            self.alive = False

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        tls = ssl_context(self.cfg) if self.cfg.is_ssl else None
        servers = [
            await loop.create_server(lambda: _Connection(self), sock=listener.sock, ssl=tls, backlog=self.cfg.backlog)
            for listener in self.sockets
        ]
        while self.alive:
            self.notify()
            for connection in list(self.connections):  # idle keep-alive connections past the limit
                connection.close_if_idle(self.cfg.keepalive)
            if self.ppid != os.getppid():
                self.log.info("parent changed, shutting down: %s", self)
                break
            await asyncio.sleep(_TICK_SECONDS)
        await self._drain(servers, loop)

    async def _drain(self, servers: list[asyncio.Server], loop: asyncio.AbstractEventLoop) -> None:
        for server in servers:
            server.close()
        deadline = loop.time() + self.cfg.graceful_timeout
        while self.connections and loop.time() < deadline:
            for connection in list(self.connections):
                connection.close_if_idle()  # a request half received is let finish
            await asyncio.sleep(0.05)
            self.notify()
