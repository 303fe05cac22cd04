"""The greeter function: count the user, greet them, or dead-letter what cannot be greeted."""

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from statefun import StatefulFunctions, ValueSpec, kafka_egress_message

from protos.generated.greeter_pb2 import DeadLetter, DeadLetterReason, GreetResponse, SeenCount

from .greeting import compute_greeting
from .settings import Settings
from .types import DEAD_LETTER_TYPE, GREET_RESPONSE_TYPE, SEEN_COUNT_TYPE
from .validation import Rejection, validate
from .wiring import DEAD_LETTER_TOPIC, EGRESS_ID, FUNCTION_TYPE, GREETINGS_TOPIC, seen_count_state_name

log = logging.getLogger("greeter.function")

DeadLetterHook = Callable[[str, Rejection], None]


def seen_count_spec(ttl_seconds: int) -> ValueSpec:
    expiry = timedelta(seconds=ttl_seconds) if ttl_seconds > 0 else None
    return ValueSpec(name=seen_count_state_name(ttl_seconds), type=SEEN_COUNT_TYPE, expire_after_call=expiry)


def dead_letter(address_id: str, rejection: Rejection, value_typename: str, raw: bytes | None) -> Any:
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
    response = GreetResponse(name=name, greeting=compute_greeting(name, seen))
    return kafka_egress_message(
        typename=EGRESS_ID, topic=GREETINGS_TOPIC, key=name, value=response, value_type=GREET_RESPONSE_TYPE
    )


def build_functions(settings: Settings, on_dead_letter: DeadLetterHook | None = None) -> StatefulFunctions:
    """The StatefulFunctions registry holding example/greeter, configured by `settings`."""
    state_name = seen_count_state_name(settings.seen_count_ttl_seconds)
    max_name_length = settings.max_name_length
    functions = StatefulFunctions()

    @functions.bind(typename=FUNCTION_TYPE, specs=[seen_count_spec(settings.seen_count_ttl_seconds)])  # type: ignore[untyped-decorator]
    def greet(context: Any, message: Any) -> None:
        address_id: str = context.address.id
        typed_value = message.typed_value
        raw = typed_value.value if typed_value.has_value else None
        checked = validate(typed_value.typename, raw, address_id, max_name_length)
        if isinstance(checked, Rejection):
            log.warning(
                "dead-lettered a record",
                extra={
                    "address": f"{FUNCTION_TYPE}/{address_id}",
                    "reason": DeadLetterReason.Name(checked.reason),
                    "detail": checked.detail,
                },
            )
            if on_dead_letter is not None:
                on_dead_letter(address_id, checked)
            context.send_egress(dead_letter(address_id, checked, typed_value.typename, raw))
            return
        storage = context.storage
        previous: SeenCount | None = getattr(storage, state_name)
        seen = (previous.seen if previous is not None else 0) + 1
        setattr(storage, state_name, SeenCount(seen=seen))
        context.send_egress(greeting_record(checked.name, seen))

    return functions
