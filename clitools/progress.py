"""A live, rate-limited progress line on stderr: only on a terminal, unless forced."""

import argparse
import time
from collections.abc import Callable
from typing import TextIO

# ANSI "erase to end of line": a shorter line must not leave the tail of the previous one.
_CLEAR_TAIL = "\x1b[K"


class Progress:
    """A status line redrawn in place on `stream`, at most once per `interval` seconds; `finish` ends it."""

    def __init__(
        self,
        stream: TextIO,
        enabled: bool | None = None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`enabled=None` means: show it when `stream` is a terminal (a log file must not fill with `\\r`)."""
        self._stream = stream
        self._enabled = stream.isatty() if enabled is None else enabled
        self._interval = interval
        self._clock = clock
        self._last_shown: float | None = None
        self._shown = False

    def update(self, render: Callable[[], str]) -> None:
        """Redraw the line, at most once per interval; `render` is only called when the line is drawn."""
        if not self._enabled:
            return
        now = self._clock()
        if self._last_shown is not None and now - self._last_shown < self._interval:
            return
        self._last_shown = now
        self._stream.write(f"\r{render()}{_CLEAR_TAIL}")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        """End the line so that later messages start on a fresh one."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """Add --progress / --no-progress; unset (None), Progress shows the line only on a terminal."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress line on stderr (default: only when stderr is a terminal)",
    )
