"""Graceful stop on SIGINT/SIGTERM: the first signal asks the tool to drain and stop, a second forces exit.

The handler only records the request: the tool's loop checks `requested` between short blocking calls,
so it can flush what it holds. The second signal raises `ForcedExit`, which the CLI turns into 128 + signal.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


# A BaseException, like KeyboardInterrupt: an `except Exception` on the way must not swallow it.
class ForcedExit(BaseException):
    """A second stop signal arrived while the tool was still draining."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopFlag:
    """Set by the first stop signal; the tool polls it."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signum is not None:
            raise ForcedExit(signum)
        self.signum = signum


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` for the duration of the block; restore the old handlers after."""
    previous = {signum: signal.signal(signum, flag.handle) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
