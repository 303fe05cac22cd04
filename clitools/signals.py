"""Graceful stop on SIGINT/SIGTERM for every CLI: the first signal asks to drain and stop, a second forces exit.

The handler only records the request: the tool's loop checks `requested` (or waits on `event`, which a
thread can wait on too) between short blocking calls, so it can flush what it holds. The second signal
raises `ForcedExit`, which the CLI turns into 128 + signal. Handlers are restored when the block ends.
`unwinding_on_sigterm` is for the benchmarks, whose clean-up is in `finally` blocks: SIGTERM unwinds them
as Ctrl-C does.
"""

import signal
import threading
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
        """128 + the signal, the shell's convention (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class StopFlag:
    """Set by the first stop signal; the tool polls it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()  # set with the first signal, for code that waits instead of polling

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived, or `request` was called."""
        return self.event.is_set()

    def request(self) -> None:
        """Ask to stop without a signal (another thread ending a read); `exit_code` stays None."""
        self.event.set()

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that asked to stop, the shell's convention; None when none did."""
        return None if self.signum is None else 128 + self.signum

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler: record the first signal and set `event`; a second one raises ForcedExit."""
        if self.signum is not None:
            raise ForcedExit(signum)
        self.signum = signum
        self.event.set()


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` for the duration of the block; restore the old handlers after."""
    previous = {signum: signal.signal(signum, flag.handle) for signum in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding like Ctrl-C."""


@contextmanager
def unwinding_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated for the duration of the block, as SIGINT raises KeyboardInterrupt."""

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
