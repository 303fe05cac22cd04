"""The two halves of HTTP/1.1 a WSGI server needs: request -> environ, status + headers + body -> bytes."""

import sys
from collections.abc import Iterable
from typing import IO, Any

_SKIPPED_RESPONSE_HEADERS = frozenset({"connection", "content-length", "transfer-encoding"})


def wsgi_environ(
    *,
    method: str,
    path: str,
    query: str,
    http_version: str,
    headers: Iterable[tuple[bytes, bytes]],
    body: IO[bytes],
    server: tuple[str, int] | Any,
    peer: tuple[str, int] | Any,
    url_scheme: str,
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": str(server[0]) if server else "",
        "SERVER_PORT": str(server[1]) if server else "",
        "SERVER_PROTOCOL": f"HTTP/{http_version}",
        "REMOTE_ADDR": str(peer[0]) if peer else "",
        "REMOTE_PORT": str(peer[1]) if peer else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
            continue
        key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def render_response(
    status: bytes, headers: Iterable[tuple[str, str]], body: Iterable[bytes], keep_alive: bool
) -> bytes:
    """A complete HTTP/1.1 response with an exact Content-Length (bodies here are small and in memory)."""
    payload = b"".join(body)
    lines = [b"HTTP/1.1 " + status]
    for name, value in headers:
        if name.lower() not in _SKIPPED_RESPONSE_HEADERS:
            lines.append(f"{name}: {value}".encode("latin-1"))
    lines.append(b"Content-Length: " + str(len(payload)).encode())
    lines.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload
