"""Waiting on a condition, with a deadline only as the bound past which the test fails."""

import time
from collections.abc import Callable


def wait_for(what: str, check: Callable[[], bool], deadline_s: float, every: float = 0.2) -> None:
    """Return as soon as `check()` is true, polling every `every` seconds. Raises AssertionError naming `what`
    when it is still false after `deadline_s` seconds."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
