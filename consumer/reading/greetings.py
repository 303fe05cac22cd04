"""A record of the `greetings` topic as the consumer sees it: decoded, checked and rendered as a line."""

import json
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from google.protobuf.message import DecodeError

from protos.generated.greeter_pb2 import GreetResponse


class InvalidRecord(ValueError):
    """A record on `greetings` that is not a greeting the greeter could have written."""


@dataclass(frozen=True)
class Greeting:
    """A decoded greeting and where it was read."""

    name: str
    greeting: str
    partition: int
    offset: int
    timestamp: int | None  # milliseconds since the epoch, None when the broker has none


def decode(key: bytes | None, value: bytes | None, partition: int, offset: int, timestamp: int | None) -> Greeting:
    """The greeting in a record, or InvalidRecord saying what is wrong with it."""
    where = f"partition {partition} offset {offset}"
    if key is None:
        raise InvalidRecord(f"{where}: null key")
    if value is None:
        raise InvalidRecord(f"{where}: null value (tombstone)")
    try:
        name = key.decode("utf-8")
        response = GreetResponse.FromString(value)
    except (UnicodeDecodeError, DecodeError) as error:
        raise InvalidRecord(f"{where}: {error}") from None
    if response.name != name:
        raise InvalidRecord(f"{where}: key {name!r} differs from the name {response.name!r}")
    return Greeting(name, response.greeting, partition, offset, timestamp)


def from_message(message: Any) -> Greeting:
    """The greeting in a consumed Kafka message, or InvalidRecord."""
    kind, timestamp = message.timestamp()
    stamp = None if kind == TIMESTAMP_NOT_AVAILABLE else int(timestamp)
    return decode(message.key(), message.value(), message.partition(), message.offset(), stamp)


def as_text(greeting: Greeting) -> str:
    """`name<TAB>greeting`, the default output line."""
    return f"{greeting.name}\t{greeting.greeting}"


def as_json(greeting: Greeting) -> str:
    """One JSON object: name, greeting, partition, offset, timestamp (--json)."""
    return json.dumps(asdict(greeting), ensure_ascii=False)
