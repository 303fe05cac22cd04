"""A greeter release with a bug, for the tests of the greeter's 500s: it raises on every returning user (a first
visit still works, so its start-up self-test passes). Served by greeter-serve's main as
`python -m tests.support.failing [greeter-serve's flags]`."""

from __future__ import annotations

import sys
from typing import Any

from greeter.function.greeter import Greeter
from greeter.server import serve

BUG = "a bug in this release: returning users cannot be counted"


class FailingGreeter(Greeter):
    """The released greeter, except that counting a returning user raises."""

    def next_state(self, previous: Any) -> Any:
        if previous is not None:
            raise RuntimeError(BUG)
        return super().next_state(previous)


if __name__ == "__main__":
    sys.exit(serve.main(sys.argv[1:], greeter_type=FailingGreeter))
