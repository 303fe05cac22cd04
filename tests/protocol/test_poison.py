"""Poison records: dead-lettered in the same reply, count untouched, the rest of the batch served."""

from collections.abc import Callable

import pytest
from statefun.request_reply_pb2 import TypedValue

from greeter.config.settings import Settings
from greeter.protocol.harness import RuntimeHarness
from protos.generated.greeter_pb2 import DeadLetterReason, GreetRequest, GreetResponse, SeenCount

from .messages import dead_letters, greet, greetings, raw

Make = Callable[..., RuntimeHarness]

POISON: list[tuple[str, TypedValue, int]] = [
    ("bad protobuf", raw(b"\xff\xff\xff"), DeadLetterReason.UNDECODABLE),
    ("invalid UTF-8", raw(b"\x0a\x03Ad\xff"), DeadLetterReason.INVALID_UTF8),
    ("empty name", raw(GreetRequest(name="").SerializeToString()), DeadLetterReason.EMPTY_NAME),
    ("no value", raw(b"", "type.googleapis.com/example.GreetRequest"), DeadLetterReason.EMPTY_NAME),
    (
        "oversized name",
        raw(GreetRequest(name="A" * 61_440).SerializeToString()),
        DeadLetterReason.NAME_TOO_LONG,
    ),
    ("name != key", raw(GreetRequest(name="Bob").SerializeToString()), DeadLetterReason.NAME_MISMATCH),
    (
        "wrong field layout",
        raw(GreetResponse(name="Ada", greeting="x").SerializeToString()),
        DeadLetterReason.UNDECODABLE,
    ),
    ("varint in the name field", raw(SeenCount(seen=3).SerializeToString()), DeadLetterReason.UNDECODABLE),
    (
        "wrong typename",
        raw(GreetRequest(name="Ada").SerializeToString(), "example/Other"),
        DeadLetterReason.UNEXPECTED_TYPE,
    ),
]


@pytest.mark.parametrize(("kind", "value", "reason"), POISON, ids=[p[0] for p in POISON])
def test_poison_between_good_records(make_runtime: Make, kind: str, value: TypedValue, reason: int) -> None:
    runtime = make_runtime()
    records = runtime.invoke("Ada", [greet("Ada"), value, greet("Ada")])
    good = [r for r in records if r.topic == "greetings"]
    bad = [r for r in records if r.topic == "names-dlq"]
    # The poison neither gets a greeting nor moves the count.
    assert greetings(good) == [("Ada", "Welcome Ada"), ("Ada", "Nice to see you again Ada")]
    (letter,) = dead_letters(bad)
    assert letter.reason == reason
    assert letter.function_type == "example/greeter"
    assert letter.address_id == "Ada"
    assert letter.detail
    # Nothing of the original is lost.
    assert letter.value == value.value
    assert letter.value_typename == value.typename
    stored = runtime.stored("Ada", "seen_count")
    assert stored is not None
    assert SeenCount.FromString(stored.value).seen == 2


def test_a_batch_of_only_poison_leaves_no_state(make_runtime: Make) -> None:
    runtime = make_runtime()
    records = runtime.invoke("Ada", [raw(b"\xff"), raw(b"\xfe")])
    assert [d.reason for d in dead_letters(records)] == [DeadLetterReason.UNDECODABLE] * 2
    assert runtime.stored("Ada", "seen_count") is None
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Welcome Ada")]


def test_an_empty_address_id_is_dead_lettered_not_a_500(make_runtime: Make) -> None:
    runtime = make_runtime()
    (letter,) = dead_letters(runtime.invoke("", [greet("")]))
    assert letter.reason == DeadLetterReason.EMPTY_NAME
    assert letter.address_id == ""


def test_the_name_bound_is_configurable(make_runtime: Make) -> None:
    runtime = make_runtime(Settings(max_name_length=3))
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Welcome Ada")]
    (letter,) = dead_letters(runtime.invoke("Adam", [greet("Adam")]))
    assert letter.reason == DeadLetterReason.NAME_TOO_LONG
