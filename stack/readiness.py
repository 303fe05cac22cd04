"""Wait for real readiness with a deadline, failing with the process name, its log and its last lines."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

# A check returns None when ready, else why not yet (shown if the deadline passes).
Check = Callable[[], str | None]


class StartError(RuntimeError):
    """A process did not become ready; the message names it and its log file."""


class Interrupted(RuntimeError):
    """A stop was requested (Ctrl-C, SIGTERM) while waiting."""


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log (of its last 64 KiB), or `(no log file)`."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(data.splitlines()[-lines:])


def wait_until(
    what: str,
    check: Check,
    *,
    timeout: float,
    log: Path,
    alive: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll `check` until it returns None; raise StartError on the deadline or if the process dies."""
    deadline = clock() + timeout
    reason = "not checked yet"
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted(f"stopped while waiting for {what}")
        try:
            result = check()
        except Exception as error:  # a refused connection is just "not yet"
            result = f"{type(error).__name__}: {error}"
        if result is None:
            if alive is not None and not alive():  # what answered is not the process we started
                raise StartError(f"{what} exited right after start. Log: {log}\n--- last lines ---\n{tail(log)}")
            return
        reason = result
        if alive is not None and not alive():
            raise StartError(
                f"{what} exited before it was ready ({reason}). Log: {log}\n--- last lines of {log} ---\n{tail(log)}"
            )
        if clock() >= deadline:
            raise StartError(
                f"{what} was not ready within {timeout:.0f} s: {reason}. Log: {log}\n"
                f"--- last lines of {log} ---\n{tail(log)}"
            )
        if stop is not None:
            stop.wait(interval)
        else:
            sleep(interval)


def port_open(host: str, port: int) -> str | None:
    """None when host:port accepts a connection within 1 s, else why not."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((host, port)) == 0:
            return None
    return f"nothing listens on {host}:{port}"


def port_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now."""
    with socket.socket() as sock:
        # As servers do: a port in TIME_WAIT is free to them, only a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def http_ok(url: str, context: ssl.SSLContext | None = None) -> str | None:
    """None when GET `url` answers 200, else the status.
    A connection that fails raises instead (wait_until reads any exception as not ready yet).
    """
    try:
        with urllib.request.urlopen(url, timeout=2.0, context=context) as response:
            return None if response.status == 200 else f"GET {url} -> {response.status}"
    except urllib.error.HTTPError as error:
        return f"GET {url} -> {error.code}"
