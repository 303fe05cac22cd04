"""The subcommands: `tail` and `latency` print greetings (`latency` also times them), `verify` checks them.

Each takes a Session and returns the exit code; data goes to stdout, diagnostics to stderr.
"""

from __future__ import annotations

from collections.abc import Callable

from .reading.greetings import Greeting, as_json, as_text
from .reading.topics import read_to_end, topic_ends
from .session import Session, latency_monitor, read_greetings, report_read
from .stored_names import StoredNames, dead_letter_problems
from .verify import Expected, Verifier

_MAX_PROBLEMS_SHOWN = 20


def tail(session: Session) -> int:
    """`tail`: print each greeting as `name<TAB>greeting` (or JSON)."""
    outcome = read_greetings(session, _printer(session))
    report_read(session, outcome)
    return 0


def latency(session: Session) -> int:
    """`latency`: print each greeting as `tail` does, and time it against its request."""
    with latency_monitor(session) as monitor:
        outcome = read_greetings(session, _printer(session), latency=monitor)
    report_read(session, outcome, monitor)
    return 0


def _printer(session: Session) -> Callable[[Greeting], None]:
    render = as_json if session.args.json else as_text
    return lambda greeting: print(render(greeting))


def verify(session: Session) -> int:
    """`verify`: check every name's greetings against what is expected; print the summary, 1 on any violation."""
    args = session.args
    names_ends = topic_ends(session.config, args.names_topic) if args.from_names else {}
    expected = _expected(session)
    verifier = Verifier(from_start=args.from_beginning, expected=expected.up_front)
    outcome = read_greetings(
        session,
        lambda greeting: verifier.add(greeting.name, greeting.greeting),
        verifier.add_invalid,
        done=lambda: verifier.complete,
        settle=args.settle,
    )
    stored = expected.stored_names
    problems = _dead_letter_problems(session, stored) if stored is not None else []
    report_read(session, outcome)
    if stored is not None:
        _warn_if_names_grew(session, names_ends)
    report = verifier.report(expected.at_end(verifier.seen_names))
    print("\n".join(report.summary()))
    if stored is not None:
        print(f"dead letters: {'FAILED' if problems else 'OK'}: {stored.dead_letters.total()} expected")
        for problem in problems[:_MAX_PROBLEMS_SHOWN]:
            print(f"  {problem}")
    return 0 if report.ok and not problems else 1


def _expected(session: Session) -> Expected:
    args = session.args
    if args.from_names:
        return Expected.from_stored_names(_read_stored_names(session))
    if args.per_name is not None:
        return Expected.per_name(args.per_name, args.names)
    return Expected.order_only()


def _read_stored_names(session: Session) -> StoredNames:
    """Judge every record of the input topic as stored, as the greeter does."""
    topic = session.args.names_topic
    stored = StoredNames(session.args.max_name_length)
    for message in read_to_end(session.config, topic, on_error=session.kafka_error):
        stored.add(message.key(), message.value(), f"{topic} {message.partition()}:{message.offset()}")
        session.progress.update(lambda: f"read {stored.records} records of {topic}")
    session.warn(
        f"{topic}: {stored.records} records: {sum(stored.greetings.values())} "
        f"requests of {len(stored.greetings)} names, {stored.dead_letters.total()} poison"
    )
    return stored


def _warn_if_names_grew(session: Session, ends_before: dict[int, int]) -> None:
    """--from-names judges the greetings against `names` as it was when verify began: say so when requests
    arrived since, because their greetings read as too many (or are still on their way).
    """
    topic = session.args.names_topic
    ends_now = topic_ends(session.config, topic)
    grown = sum(max(0, end - ends_before.get(partition, 0)) for partition, end in ends_now.items())
    if grown:
        session.warn(
            f"{topic} grew by {grown} records while verify ran: --from-names expects what {topic} held when it "
            f"began, so greetings of the newer requests count as too many; stop what writes to {topic} "
            "(the generator) and verify again"
        )


def _dead_letter_problems(session: Session, stored: StoredNames) -> list[str]:
    """The records of `names` the runtime cannot take, and how the dead-letter topic differs from its poison."""
    names_topic, dead_letter_topic = session.args.names_topic, session.args.dead_letter_topic
    letters = [
        message.value() or b""
        for message in read_to_end(session.config, dead_letter_topic, on_error=session.kafka_error)
    ]
    problems = [f"{names_topic}: {where} (the runtime cannot take it)" for where in stored.unprocessable]
    return problems + [
        f"{dead_letter_topic}: {problem}" for problem in dead_letter_problems(stored.dead_letters, letters)
    ]


# Subcommand -> what runs it.
COMMANDS = {"tail": tail, "verify": verify, "latency": latency}
