"""A self-test of the function path: one canned request through the real dispatcher."""

from statefun.request_reply_pb2 import FromFunction

from greeter.config.settings import Settings
from greeter.config.wiring import FUNCTION_TYPE, GREETINGS_TOPIC, seen_count_state_name
from greeter.function.greeting import compute_greeting
from greeter.function.types import GREET_REQUEST_TYPE, SEEN_COUNT_TYPE
from greeter.protocol.dispatch import Dispatcher
from greeter.protocol.messages import build_request, kafka_records, typed_value
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse

# One character: fits every name bound (GREETER_MAX_NAME_LENGTH is at least 1).
_PROBE_NAME = "?"


class SelfTestFailed(RuntimeError):
    """The canned request did not come back as the expected greeting."""


def self_test(dispatcher: Dispatcher, settings: Settings) -> None:
    """Send one canned first visit by the name `?` through `dispatcher`; SelfTestFailed unless it is greeted."""
    request = build_request(
        FUNCTION_TYPE,
        _PROBE_NAME,
        [typed_value(GREET_REQUEST_TYPE.typename, GreetRequest(name=_PROBE_NAME).SerializeToString())],
        {seen_count_state_name(settings.seen_count_ttl_seconds): typed_value(SEEN_COUNT_TYPE.typename, None)},
    )
    reply = FromFunction()
    reply.ParseFromString(dispatcher.handle(request).body)
    records = kafka_records(reply)
    greeting = GreetResponse()
    if len(records) == 1 and records[0].topic == GREETINGS_TOPIC:
        greeting.ParseFromString(records[0].value)
    if greeting.greeting != compute_greeting(_PROBE_NAME, 1):
        raise SelfTestFailed(f"the function did not greet the probe as expected: {reply}")
