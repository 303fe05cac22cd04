"""The real Flask app driven through its WSGI interface by a stand-in for the runtime."""

from collections.abc import Callable

from greeter.config.settings import Settings
from greeter.protocol.harness import RuntimeHarness
from protos.generated.greeter_pb2 import DeadLetterReason, SeenCount

from .conftest import FakeClock
from .messages import greet, greetings

Make = Callable[..., RuntimeHarness]


def test_first_call_asks_for_state_then_greets(make_runtime: Make) -> None:
    runtime = make_runtime()
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Welcome Ada")]
    assert runtime.missing_state_replies == 1
    spec = runtime.specs["seen_count"]
    assert spec.typename == "type.googleapis.com/example.SeenCount"
    assert spec.expire_after_ms == 0


def test_counts_continue_across_requests(make_runtime: Make) -> None:
    runtime = make_runtime()
    seen = [greetings(runtime.invoke("Ada", [greet("Ada")]))[0][1] for _ in range(5)]
    assert seen == [
        "Welcome Ada",
        "Nice to see you again Ada",
        "Third time is a charm Ada",
        "Nice to see you at the 4-nth time Ada!",
        "Nice to see you at the 5-nth time Ada!",
    ]
    stored = runtime.stored("Ada", "seen_count")
    assert stored is not None
    assert SeenCount.FromString(stored.value).seen == 5
    assert runtime.missing_state_replies == 1


def test_a_batch_is_greeted_in_order(make_runtime: Make) -> None:
    runtime = make_runtime()
    out = greetings(runtime.invoke("Ada", [greet("Ada")] * 4))
    assert [text for _, text in out] == [
        "Welcome Ada",
        "Nice to see you again Ada",
        "Third time is a charm Ada",
        "Nice to see you at the 4-nth time Ada!",
    ]


def test_users_are_counted_apart(make_runtime: Make) -> None:
    runtime = make_runtime()
    runtime.invoke("Ada", [greet("Ada")] * 2)
    assert greetings(runtime.invoke("Bob", [greet("Bob")])) == [("Bob", "Welcome Bob")]
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Third time is a charm Ada")]


def test_unicode_names(make_runtime: Make) -> None:
    runtime = make_runtime()
    for name in ["Zoë", "José", "李小龍", "Ωmega 🚀"]:
        runtime.invoke(name, [greet(name)])
        assert greetings(runtime.invoke(name, [greet(name)])) == [(name, f"Nice to see you again {name}")]


def test_expiry_registers_expire_after_call_under_its_own_state_name(make_runtime: Make) -> None:
    runtime = make_runtime(Settings(seen_count_ttl_seconds=60))
    runtime.invoke("Ada", [greet("Ada")])
    assert list(runtime.specs) == ["seen_count_ttl"]
    spec = runtime.specs["seen_count_ttl"]
    assert spec.expire_after_ms == 60_000
    assert spec.mode == 2  # AFTER_INVOKE


def test_a_user_idle_past_the_ttl_is_welcomed_again(make_runtime: Make, clock: FakeClock) -> None:
    runtime = make_runtime(Settings(seen_count_ttl_seconds=60))
    runtime.invoke("Ada", [greet("Ada")])
    clock.advance(59)
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Nice to see you again Ada")]
    clock.advance(59)  # every call restarts the 60 s
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Third time is a charm Ada")]
    clock.advance(61)
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Welcome Ada")]


def test_without_ttl_a_user_is_never_forgotten(make_runtime: Make, clock: FakeClock) -> None:
    runtime = make_runtime()
    runtime.invoke("Ada", [greet("Ada")])
    clock.advance(10 * 365 * 86400)
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Nice to see you again Ada")]


def test_reason_enum_is_stable() -> None:
    # Consumers of names-dlq switch on these numbers: they must never change.
    assert DeadLetterReason.UNDECODABLE == 1
    assert DeadLetterReason.INVALID_UTF8 == 2
    assert DeadLetterReason.EMPTY_NAME == 3
    assert DeadLetterReason.NAME_TOO_LONG == 4
    assert DeadLetterReason.NAME_MISMATCH == 5
    assert DeadLetterReason.UNEXPECTED_TYPE == 6
