"""What `greeter-consumer verify` expects on `greetings`: one object, chosen by the command line.

Three ways to say it, one constructor each:

- `Expected.order_only()` (no --per-name, no --from-names): each name's greetings must be 1..k in order, any
  k. Read from the end (--no-from-beginning), each name's first greeting sets its baseline instead of 1.
- `Expected.per_name(k, names)` (--per-name K [--names-file F]): every name must end at greeting K; with a
  names file those names and no others, else every name read.
- `Expected.from_stored_names(expectation)` (--from-names): what `names` as stored asks for: each valid request
  one more greeting of its name, each poison record one dead letter (checked on `names-dlq` too).

The verifier asks it twice: `up_front` before reading (a known end lets the read stop once everything
arrived, after the settle window) and `at_end(seen_names)` for the final report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .expectation import Expectation


@dataclass(frozen=True)
class Expected:
    """Use the constructors below; the fields say what each one fixed."""

    up_front: Mapping[str, int] | None = None  # name -> the greeting it must end at, known before reading
    each_seen_name_reaches: int | None = None  # every name read must end at this greeting (decided at the end)
    stored_names: Expectation | None = None  # the reading of `names` behind --from-names (its dead letters too)

    @classmethod
    def order_only(cls) -> Expected:
        """No end expected: only the order of each name's greetings is checked."""
        return cls()

    @classmethod
    def per_name(cls, k: int, names: Iterable[str] | None = None) -> Expected:
        """Every name ends at greeting `k`: the given `names` (and no others), or, without them, every name read."""
        if names is None:
            return cls(each_seen_name_reaches=k)
        return cls(up_front=dict.fromkeys(names, k))

    @classmethod
    def from_stored_names(cls, expectation: Expectation) -> Expected:
        """What `names` as stored asks for: its valid requests as greetings, its poison records as dead letters."""
        return cls(up_front=expectation.greetings, stored_names=expectation)

    @property
    def checks_dead_letters(self) -> bool:
        """Whether the dead-letter topic must hold exactly the poison records of `names`."""
        return self.stored_names is not None

    def at_end(self, seen_names: Iterable[str]) -> Mapping[str, int] | None:
        """Name -> the greeting it must end at, once the read is over; None: no end is expected."""
        if self.each_seen_name_reaches is not None:
            return dict.fromkeys(seen_names, self.each_seen_name_reaches)
        return self.up_front
