"""Ports and readiness for tests that start real servers on loopback."""

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from stack.freeports import free_ports


def free_port() -> int:
    """A free loopback port no other process is handed meanwhile (stack/freeports.py)."""
    (port,) = free_ports(1)
    return port


def wait_for_http(url: str, deadline_seconds: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll `url` until it answers 200; fail naming the URL when the deadline passes or the server died."""
    end = time.monotonic() + deadline_seconds
    last = "no answer"
    while time.monotonic() < end:
        if alive is not None and not alive():
            raise AssertionError(f"the server behind {url} exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last = str(error)
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {deadline_seconds} s: {last}")
