"""What `greetings` and `names-dlq` must hold, worked out from `names` as stored.

The input topic is the only trustworthy record of what was asked: a producer's own count can be wrong (a
retried send, a second producer). Each record of `names` is judged by the greeter's own validation: a
valid request must end up as its name's next greeting, anything else as one dead letter carrying the
original bytes. Valid while seen_count does not expire (GREETER_SEEN_COUNT_TTL=0, the default): with
expiry on, a count may start again at 1, which no reading of `names` can predict.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from greeter.config.settings import Settings
from greeter.function.types import GREET_REQUEST_TYPE
from greeter.function.validation import Rejection, validate
from protos.generated.greeter_pb2 import DeadLetter


@dataclass(frozen=True)
class Unprocessable:
    """A record the runtime itself cannot take (null or non-UTF-8 key, null value): it stops the job."""

    reason: str


def judge(key: bytes | None, value: bytes | None, max_name_length: int) -> str | Rejection | Unprocessable:
    """What the pipeline makes of one record of `names`: the name it greets, a dead letter, or a job failure."""
    if key is None or value is None:
        return Unprocessable(f"null {'key' if key is None else 'value'}")
    try:
        address_id = key.decode("utf-8")
    except UnicodeDecodeError:
        return Unprocessable("key is not UTF-8")
    judged = validate(GREET_REQUEST_TYPE.typename, value, address_id, max_name_length)
    return judged if isinstance(judged, Rejection) else address_id


@dataclass
class StoredNames:
    """What `names` as stored asks for, one record at a time (`add`)."""

    max_name_length: int = Settings.max_name_length  # the greeter's GREETER_MAX_NAME_LENGTH
    greetings: dict[str, int] = field(default_factory=dict)  # name -> the greeting number it must end at
    dead_letters: Counter[tuple[bytes, bytes]] = field(default_factory=Counter)  # (key, value) -> how many
    unprocessable: list[str] = field(default_factory=list)
    records: int = 0

    def add(self, key: bytes | None, value: bytes | None, where: str = "") -> None:
        """Judge one record of `names`; `where` names it in the unprocessable list."""
        self.records += 1
        judged = judge(key, value, self.max_name_length)
        if isinstance(judged, Unprocessable):
            self.unprocessable.append(f"{where}: {judged.reason}")
        elif isinstance(judged, Rejection):
            self.dead_letters[(key or b"", value or b"")] += 1
        else:
            self.greetings[judged] = self.greetings.get(judged, 0) + 1


def stored_names_from(
    records: Iterable[tuple[bytes | None, bytes | None]], max_name_length: int = Settings.max_name_length
) -> StoredNames:
    """The StoredNames of (key, value) records (numbered #0, #1, ... in its messages)."""
    stored = StoredNames(max_name_length)
    for index, (key, value) in enumerate(records):
        stored.add(key, value, f"record #{index}")
    return stored


def dead_letter_problems(expected: Counter[tuple[bytes, bytes]], letters: Iterable[bytes]) -> list[str]:
    """Compare the DeadLetter records read from `names-dlq` with the poison records of `names`, byte for byte.
    Empty when each poison record has exactly one dead letter and there is no other.
    """
    got: Counter[tuple[bytes, bytes]] = Counter()
    problems = []
    for index, raw in enumerate(letters):
        try:
            letter = DeadLetter.FromString(raw)
        except DecodeError as error:
            problems.append(f"dead letter #{index} is not a DeadLetter: {error}")
            continue
        got[(letter.address_id.encode("utf-8"), letter.value)] += 1
    for (key, value), count in sorted((expected - got).items()):
        problems.append(f"missing: {count} dead letter(s) for key {key[:40]!r} with {len(value)} bytes")
    for (key, value), count in sorted((got - expected).items()):
        problems.append(f"unexpected: {count} dead letter(s) for key {key[:40]!r} with {len(value)} bytes")
    return problems
