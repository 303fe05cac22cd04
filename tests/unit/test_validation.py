import pytest

from greeter.function.validation import Rejection, validate
from protos.generated.greeter_pb2 import DeadLetterReason, GreetRequest, GreetResponse, SeenCount

TYPENAME = "type.googleapis.com/example.GreetRequest"


def request_bytes(name: str) -> bytes:
    return GreetRequest(name=name).SerializeToString()


def test_a_good_request_is_returned_decoded() -> None:
    checked = validate(TYPENAME, request_bytes("Ada"), "Ada", 256)
    assert isinstance(checked, GreetRequest)
    assert checked.name == "Ada"


@pytest.mark.parametrize(
    ("typename", "raw", "address_id", "reason"),
    [
        (TYPENAME, b"\xff\xff\xff", "Ada", DeadLetterReason.UNDECODABLE),
        (TYPENAME, b"\x0a\x02\xff\xfe", "Ada", DeadLetterReason.INVALID_UTF8),
        (TYPENAME, b"", "Ada", DeadLetterReason.EMPTY_NAME),
        (TYPENAME, None, "Ada", DeadLetterReason.EMPTY_NAME),
        (TYPENAME, request_bytes("x" * 257), "x" * 257, DeadLetterReason.NAME_TOO_LONG),
        (TYPENAME, request_bytes("Bob"), "Ada", DeadLetterReason.NAME_MISMATCH),
        (
            "type.googleapis.com/example.GreetResponse",
            request_bytes("Ada"),
            "Ada",
            DeadLetterReason.UNEXPECTED_TYPE,
        ),
        # Valid protobuf under another message's layout: a GreetResponse, a SeenCount (varint in field 1).
        (
            TYPENAME,
            GreetResponse(name="Ada", greeting="hi").SerializeToString(),
            "Ada",
            DeadLetterReason.UNDECODABLE,
        ),
        (TYPENAME, SeenCount(seen=7).SerializeToString(), "Ada", DeadLetterReason.UNDECODABLE),
    ],
)
def test_poison_is_rejected_with_its_reason(typename: str, raw: bytes | None, address_id: str, reason: int) -> None:
    checked = validate(typename, raw, address_id, 256)
    assert isinstance(checked, Rejection)
    assert checked.reason == reason
    assert checked.detail


def test_the_name_bound_counts_characters_not_bytes() -> None:
    name = "é" * 10  # 20 bytes in UTF-8
    assert isinstance(validate(TYPENAME, request_bytes(name), name, 10), GreetRequest)
    assert isinstance(validate(TYPENAME, request_bytes(name + "é"), name + "é", 10), Rejection)


def test_long_names_still_decode_with_multi_byte_lengths() -> None:
    name = "n" * 200  # a two-byte varint length prefix
    assert isinstance(validate(TYPENAME, request_bytes(name), name, 256), GreetRequest)


@pytest.mark.parametrize("length", [1, 127, 128, 16383, 16384])
def test_every_length_prefix_size_decodes(length: int) -> None:
    # The name's length prefix is a varint: one byte up to 127, two up to 16,383, three beyond.
    name = "n" * length
    assert isinstance(validate(TYPENAME, request_bytes(name), name, 20_000), GreetRequest)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x41",  # field number 0: no protobuf message has it
        b"\x08\x01\x00\x41",  # the same after a varint in the name's field number
        b"\x12\x01\xff\x00\x41",  # the same after non-UTF-8 bytes in another field
    ],
)
def test_bytes_no_greet_request_parser_takes_are_undecodable_not_invalid_utf8(raw: bytes) -> None:
    checked = validate(TYPENAME, raw, "Ada", 256)
    assert isinstance(checked, Rejection)
    assert checked.reason == DeadLetterReason.UNDECODABLE
