"""Turns one incoming message into a GreetRequest the greeter can count, or a Rejection saying why not.

Any record the runtime hands us may be poison: the runtime does not check bytes against valueType. A
rejection never raises: an exception here would become HTTP 500 and make the runtime replay the batch forever.
"""

from dataclasses import dataclass

from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from greeter.function.types import GREET_REQUEST_TYPE
from protos.generated.greeter_pb2 import DeadLetterReason, GreetRequest

_NAME_FIELD = 1
_LENGTH_DELIMITED = 2


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is dead-lettered: the reason the DeadLetter records, and a detail for people."""

    reason: DeadLetterReason
    detail: str


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _has_invalid_utf8_name(raw: bytes) -> bool:
    """True when the bytes are well-formed protobuf whose name field is not UTF-8."""
    shell = Empty()  # every field lands in the unknown set, unchecked
    try:
        shell.ParseFromString(raw)
    except DecodeError:
        return False
    fields = UnknownFieldSet(shell)
    for index in range(len(fields)):
        field = fields[index]
        if field.field_number == _NAME_FIELD and field.wire_type == _LENGTH_DELIMITED:
            try:
                field.data.decode("utf-8")
            except UnicodeDecodeError:
                return True
    return False


def _decode(raw: bytes) -> GreetRequest | Rejection:
    request = GreetRequest()
    try:
        request.ParseFromString(raw)
    except Exception as error:  # any decoder failure is the record's fault, never the batch's
        if _has_invalid_utf8_name(raw):
            return Rejection(DeadLetterReason.INVALID_UTF8, "name is not valid UTF-8")
        return Rejection(DeadLetterReason.UNDECODABLE, f"not a GreetRequest: {error}")
    # A GreetRequest holds only its name: anything more means another message's layout.
    name_size = len(request.name.encode("utf-8"))
    canonical_size = 1 + _varint_size(name_size) + name_size if name_size else 0
    if len(raw) != canonical_size:
        return Rejection(DeadLetterReason.UNDECODABLE, "not a GreetRequest: carries fields it does not have")
    return request


def validate(value_typename: str, raw: bytes | None, address_id: str, max_name_length: int) -> GreetRequest | Rejection:
    """The GreetRequest in `raw`, or a Rejection saying why it cannot be greeted; never raises.
    The name must be non-empty, at most `max_name_length` characters and equal to the record key (`address_id`).
    """
    if value_typename != GREET_REQUEST_TYPE.typename:
        return Rejection(DeadLetterReason.UNEXPECTED_TYPE, f"expected {GREET_REQUEST_TYPE.typename}")
    decoded = _decode(raw or b"")
    if isinstance(decoded, Rejection):
        return decoded
    name = decoded.name
    if not name:
        return Rejection(DeadLetterReason.EMPTY_NAME, "the request has no name")
    if len(name) > max_name_length:
        return Rejection(
            DeadLetterReason.NAME_TOO_LONG, f"name has {len(name)} characters, the bound is {max_name_length}"
        )
    if name != address_id:
        return Rejection(DeadLetterReason.NAME_MISMATCH, "name differs from the record key")
    return decoded
