"""The greeter function: count the user, greet them, or dead-letter what cannot be greeted."""

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from statefun import StatefulFunctions, ValueSpec, kafka_egress_message

from greeter.config.settings import Settings
from greeter.config.wiring import DEAD_LETTER_TOPIC, EGRESS_ID, FUNCTION_TYPE, GREETINGS_TOPIC, seen_count_state_name
from greeter.function.greeting import compute_greeting
from greeter.function.types import DEAD_LETTER_TYPE, GREET_RESPONSE_TYPE, SEEN_COUNT_TYPE, ProtobufType
from greeter.function.validation import Rejection, validate
from protos.generated.greeter_pb2 import DeadLetter, DeadLetterReason, GreetResponse, SeenCount

log = logging.getLogger("greeter.function.greeter")

DeadLetterHook = Callable[[str, Rejection], None]


def seen_count_spec(ttl_seconds: int, state_type: ProtobufType = SEEN_COUNT_TYPE) -> ValueSpec:
    """The seen-count state: one state name per TTL mode (see wiring), forgotten `ttl_seconds` after the
    address's last call; 0 = never.
    """
    expiry = timedelta(seconds=ttl_seconds) if ttl_seconds > 0 else None
    return ValueSpec(name=seen_count_state_name(ttl_seconds), type=state_type, expire_after_call=expiry)


def dead_letter(address_id: str, rejection: Rejection, value_typename: str, raw: bytes | None) -> Any:
    """The egress message putting a refused record on the dead-letter topic, keyed by `address_id`, raw bytes kept."""
    record = DeadLetter(
        function_type=FUNCTION_TYPE,
        address_id=address_id,
        reason=rejection.reason,
        detail=rejection.detail,
        value_typename=value_typename,
        value=raw or b"",
    )
    return kafka_egress_message(
        typename=EGRESS_ID, topic=DEAD_LETTER_TOPIC, key=address_id, value=record, value_type=DEAD_LETTER_TYPE
    )


def greeting_record(name: str, seen: int) -> Any:
    """The egress message putting the greeting for `name`, seen `seen` times, on the greetings topic."""
    response = GreetResponse(name=name, greeting=compute_greeting(name, seen))
    return kafka_egress_message(
        typename=EGRESS_ID, topic=GREETINGS_TOPIC, key=name, value=response, value_type=GREET_RESPONSE_TYPE
    )


class Greeter:
    """example/greeter, configured by `settings`: the functions registry and the handler of empty-id batches.

    `state_type` and `next_state` are the per-user state's schema: a new version of the greeter that evolves the
    state (docs/operations.md, "Evolving the state") changes these two, and greeter/function/state_schema.py checks at
    start-up that it can still read what was released.
    """

    state_type: ClassVar[ProtobufType] = SEEN_COUNT_TYPE

    def next_state(self, previous: Any) -> Any:
        """The user's state after one more valid request (`previous`: None on the first): the count, one up."""
        return SeenCount(seen=(previous.seen if previous is not None else 0) + 1)

    def __init__(self, settings: Settings, on_dead_letter: DeadLetterHook | None = None) -> None:
        self._state_name = seen_count_state_name(settings.seen_count_ttl_seconds)
        self._max_name_length = settings.max_name_length
        self._on_dead_letter = on_dead_letter
        self.functions = StatefulFunctions()

        def greet(context: Any, message: Any) -> None:  # the SDK requires exactly (context, message)
            self._greet(context, message)

        spec = seen_count_spec(settings.seen_count_ttl_seconds, self.state_type)
        self.functions.register(FUNCTION_TYPE, greet, specs=[spec])

    def _rejected(self, address_id: str, typed_value: Any) -> Any:
        """The dead letter for a record that cannot be greeted, or None when it can."""
        raw = typed_value.value if typed_value.has_value else None
        checked = validate(typed_value.typename, raw, address_id, self._max_name_length)
        if not isinstance(checked, Rejection):
            return None
        log.warning(
            "dead-lettered a record",
            extra={
                "address": f"{FUNCTION_TYPE}/{address_id}",
                "reason": DeadLetterReason.Name(checked.reason),
                "detail": checked.detail,
            },
        )
        if self._on_dead_letter is not None:
            self._on_dead_letter(address_id, checked)
        return dead_letter(address_id, checked, typed_value.typename, raw)

    def _greet(self, context: Any, message: Any) -> None:
        address_id: str = context.address.id
        letter = self._rejected(address_id, message.typed_value)
        if letter is not None:
            context.send_egress(letter)
            return
        storage = context.storage
        state = self.next_state(getattr(storage, self._state_name))
        setattr(storage, self._state_name, state)
        context.send_egress(greeting_record(address_id, state.seen))

    def empty_id_records(self, typename: str, arguments: Sequence[Any]) -> list[Any]:
        """A batch for the empty id, which a Kafka record with an empty key becomes: every record is refused
        (an empty name is never greeted), so each is dead-lettered without state.
        """
        letters = [self._rejected("", argument) for argument in arguments]
        if any(letter is None for letter in letters):
            raise AssertionError("validation accepted a record for the empty id")
        return letters


def build_functions(settings: Settings, on_dead_letter: DeadLetterHook | None = None) -> StatefulFunctions:
    """The StatefulFunctions registry holding example/greeter, configured by `settings`."""
    return Greeter(settings, on_dead_letter).functions
