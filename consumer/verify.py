"""The sequence check: per name, the greetings must be exactly 1..k in order with the walkthrough's text.

Pure: it takes (name, greeting) pairs in the order they were read (one partition holds all of a name's
greetings, so that order is the committed order) and returns a report. Used by `greeter-consumer verify`
and by the end-to-end and fault tests.

What `verify` expects on `greetings` is one `Expected`, chosen by the command line, one constructor each:

- `Expected.order_only()` (no --per-name, no --from-names): each name's greetings must be 1..k in order, any
  k. Read from the end (--no-from-beginning), each name's first greeting sets its baseline instead of 1.
- `Expected.per_name(k, names)` (--per-name K [--names-file F]): every name must end at greeting K; with a
  names file those names and no others, else every name read.
- `Expected.from_stored_names(stored)` (--from-names): what `names` as stored asks for (consumer/stored_names.py):
  each valid request one more greeting of its name, each poison record one dead letter (checked on `names-dlq`
  too).

The Verifier asks it twice: `up_front` before reading (a known end lets the read stop once everything arrived,
after the settle window) and `at_end(seen_names)` for the final report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from greeter.function.greeting import compute_greeting

if TYPE_CHECKING:
    from .stored_names import StoredNames

# Examples kept per name; the counts stay exact. A systematic fault must not fill memory with examples.
MAX_EXAMPLES: Final = 10
_NTH_PREFIX: Final = "Nice to see you at the "


class Kind(StrEnum):
    """What is wrong."""

    GAP = "gap"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out of order"
    WRONG_TEXT = "wrong text"
    UNEXPECTED_NAME = "unexpected name"
    MISSING_TAIL = "missing tail"
    TOO_MANY = "too many"
    INVALID_RECORD = "invalid record"
    NO_RECORDS = "no records"


@dataclass(frozen=True)
class Problem:
    """One example of a kind of problem."""

    kind: Kind
    detail: str


@dataclass
class NameReport:
    """What was read for one name, and what is wrong with it."""

    name: str
    received: int = 0
    last: int = 0  # highest greeting number seen
    # Greeting numbers skipped over and not seen since, as inclusive ranges: a gap or an out-of-order arrival.
    missing: list[tuple[int, int]] = field(default_factory=list)
    counts: Counter[Kind] = field(default_factory=Counter)
    examples: list[Problem] = field(default_factory=list)

    def flag(self, kind: Kind, detail: str) -> None:
        """Count a problem; keep it as an example while there are fewer than MAX_EXAMPLES."""
        self.counts[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(Problem(kind, detail))

    @property
    def ok(self) -> bool:
        """No problem with this name."""
        return not self.counts


@dataclass(frozen=True)
class Report:
    """The verdict on everything read."""

    records: int
    names: Mapping[str, NameReport]
    problems: tuple[Problem, ...]  # not tied to one name

    @property
    def failed_names(self) -> list[NameReport]:
        """The names with a problem."""
        return [report for report in self.names.values() if not report.ok]

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems and not self.failed_names

    def counts(self) -> Counter[Kind]:
        """How many problems of each kind, over every name."""
        total: Counter[Kind] = Counter(problem.kind for problem in self.problems)
        for report in self.names.values():
            total.update(report.counts)
        return total

    def summary(self, max_names: int = 20) -> list[str]:
        """The verdict as lines: OK, or FAILED with examples for up to `max_names` names."""
        head = f"{self.records} greetings, {len(self.names)} names"
        if self.ok:
            return [f"verify: OK: {head}, every name 1..k in order"]
        counts = ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts().items()))
        lines = [f"verify: FAILED: {head}, {len(self.failed_names)} names with problems ({counts})"]
        lines += [f"  {problem.kind}: {problem.detail}" for problem in self.problems[:max_names]]
        for report in self.failed_names[:max_names]:
            lines += [f"  {report.name!r}: {problem.kind}: {problem.detail}" for problem in report.examples]
        if len(self.failed_names) > max_names:
            lines.append(f"  ... and {len(self.failed_names) - max_names} more names")
        return lines


def greeting_number(name: str, greeting: str) -> int | None:
    """Which greeting this is for `name` (1, 2, ...), or None if it is no greeting of `name`'s."""
    for seen in (1, 2, 3):
        if greeting == compute_greeting(name, seen):
            return seen
    digits = greeting[len(_NTH_PREFIX) :].partition("-nth time ")[0]
    if greeting.startswith(_NTH_PREFIX) and digits.isascii() and digits.isdigit():
        seen = int(digits)
        # Rebuilding the text rules out a wrong name, a leading zero or a number below 4.
        if seen >= 4 and greeting == compute_greeting(name, seen):
            return seen
    return None


def _take_missing(report: NameReport, number: int) -> bool:
    """Remove `number` from the missing ranges; False if it was not missing (so: seen before)."""
    for index, (low, high) in enumerate(report.missing):
        if low <= number <= high:
            rest = [(low, number - 1), (number + 1, high)]
            report.missing[index : index + 1] = [(a, b) for a, b in rest if a <= b]
            return True
    return False


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}..{high}"


class Verifier:
    """Feed it greetings as they are read; ask for the report at the end."""

    def __init__(self, *, from_start: bool = True, expected: Mapping[str, int] | None = None) -> None:
        """`from_start=False`: the stream began mid-topic, so each name's first greeting sets its baseline.
        `expected` (name -> the greeting number it must end at), when known up front, makes `complete` work.
        """
        self._from_start = from_start
        self._expected = expected
        self._reached: set[str] = set()  # expected names whose greetings got to their expected number
        self._names: dict[str, NameReport] = {}
        self._problems: list[Problem] = []
        self._records = 0

    def add(self, name: str, greeting: str) -> None:
        """One greeting as read."""
        position = self._records
        self._records += 1
        report = self._names.get(name)
        if report is None:
            report = self._names[name] = NameReport(name)
        report.received += 1
        number = greeting_number(name, greeting)
        if number is None:
            report.flag(Kind.WRONG_TEXT, f"{greeting!r} (record #{position})")
        elif report.received == 1 and not self._from_start:
            report.last = number
        elif number > report.last:
            if number > report.last + 1:
                report.missing.append((report.last + 1, number - 1))
            report.last = number
            if self._expected is not None and number >= self._expected.get(name, number + 1):
                self._reached.add(name)
        elif _take_missing(report, number):
            report.flag(Kind.OUT_OF_ORDER, f"greeting {number} after {report.last} (record #{position})")
        else:
            report.flag(Kind.DUPLICATE, f"greeting {number} again (record #{position})")

    @property
    def complete(self) -> bool:
        """Every expected name got to its expected number (gaps aside: the report tells). False with no
        expectation given up front.
        """
        return self._expected is not None and len(self._reached) == len(self._expected)

    @property
    def seen_names(self) -> list[str]:
        """The names read so far, in the order they first came."""
        return list(self._names)

    def add_invalid(self, detail: str) -> None:
        """A record that is not a greeting at all (undecodable, key differs from name)."""
        self._records += 1
        self._problems.append(Problem(Kind.INVALID_RECORD, detail))

    def report(self, expected: Mapping[str, int] | None = None) -> Report:
        """`expected`: name -> the greeting number it must end at (default: the one given up front); names
        outside it are unexpected. The end-of-stream checks go into copies, so reading on and asking again gives
        a fresh answer.
        """
        expected = self._expected if expected is None else expected
        names = {name: _finish(state, expected) for name, state in self._names.items()}
        for name in (expected or {}).keys() - names.keys():
            names[name] = _finish(NameReport(name), expected)
        problems = list(self._problems)
        if self._records == 0:
            problems.append(Problem(Kind.NO_RECORDS, "no greetings were read"))
        return Report(self._records, names, tuple(problems))


def _finish(state: NameReport, expected: Mapping[str, int] | None) -> NameReport:
    report = replace(state, missing=list(state.missing), counts=Counter(state.counts), examples=list(state.examples))
    for low, high in report.missing:
        report.flag(Kind.GAP, f"greetings {_span(low, high)} never arrived")
    if expected is None:
        return report
    if report.name not in expected:
        report.flag(Kind.UNEXPECTED_NAME, f"{report.received} greetings for a name not expected")
    elif report.last < expected[report.name]:
        report.flag(Kind.MISSING_TAIL, f"greetings {_span(report.last + 1, expected[report.name])} never arrived")
    elif report.last > expected[report.name]:
        report.flag(Kind.TOO_MANY, f"reached {report.last}, expected {expected[report.name]}")
    return report


def verify(
    records: Iterable[tuple[str, str]], expected: Mapping[str, int] | None = None, *, from_start: bool = True
) -> Report:
    """The report on (name, greeting) pairs in the order they were read."""
    verifier = Verifier(from_start=from_start, expected=expected)
    for name, greeting in records:
        verifier.add(name, greeting)
    return verifier.report()


@dataclass(frozen=True)
class Expected:
    """Use the constructors below; the fields say what each one fixed."""

    up_front: Mapping[str, int] | None = None  # name -> the greeting it must end at, known before reading
    each_seen_name_reaches: int | None = None  # every name read must end at this greeting (decided at the end)
    stored_names: StoredNames | None = None  # the reading of `names` behind --from-names (its dead letters too)

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
    def from_stored_names(cls, stored: StoredNames) -> Expected:
        """What `names` as stored asks for: its valid requests as greetings, its poison records as dead letters."""
        return cls(up_front=stored.greetings, stored_names=stored)

    @property
    def checks_dead_letters(self) -> bool:
        """Whether the dead-letter topic must hold exactly the poison records of `names`."""
        return self.stored_names is not None

    def at_end(self, seen_names: Iterable[str]) -> Mapping[str, int] | None:
        """Name -> the greeting it must end at, once the read is over; None: no end is expected."""
        if self.each_seen_name_reaches is not None:
            return dict.fromkeys(seen_names, self.each_seen_name_reaches)
        return self.up_front
