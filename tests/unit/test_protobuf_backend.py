"""The SDK's protobuf<4 pin is overridden to the upb backend: prove the backend and the SDK's wire format."""

from google.protobuf.internal import api_implementation
from statefun import RequestReplyHandler
from statefun.request_reply_pb2 import FromFunction, ToFunction

from greeter.config.settings import Settings
from greeter.function.greeter import build_functions
from greeter.protocol.messages import build_request, kafka_records, typed_value
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse, SeenCount


def test_protobuf_runs_on_upb() -> None:
    assert api_implementation.Type() == "upb"


def test_sdk_request_reply_messages_round_trip() -> None:
    raw = build_request(
        "example/greeter",
        "Ada",
        [typed_value("type.googleapis.com/example.GreetRequest", GreetRequest(name="Ada").SerializeToString())],
        {"seen_count": typed_value("type.googleapis.com/example.SeenCount", SeenCount(seen=2).SerializeToString())},
    )
    parsed = ToFunction()
    parsed.ParseFromString(raw)
    assert parsed.SerializeToString() == raw
    assert parsed.invocation.target.id == "Ada"
    assert parsed.invocation.state[0].state_value.value == SeenCount(seen=2).SerializeToString()


def test_the_stock_sdk_handler_serves_the_greeter_under_upb() -> None:
    handler = RequestReplyHandler(build_functions(Settings()))
    raw = build_request(
        "example/greeter",
        "Ada",
        [typed_value("type.googleapis.com/example.GreetRequest", GreetRequest(name="Ada").SerializeToString())],
        {"seen_count": typed_value("type.googleapis.com/example.SeenCount", SeenCount(seen=2).SerializeToString())},
    )
    reply = FromFunction()
    reply.ParseFromString(handler.handle_sync(raw))
    (record,) = kafka_records(reply)
    greeting = GreetResponse()
    greeting.ParseFromString(record.value)
    assert (record.topic, record.key, greeting.greeting) == ("greetings", "Ada", "Third time is a charm Ada")
    (mutation,) = reply.invocation_result.state_mutations
    assert SeenCount.FromString(mutation.state_value.value).seen == 3
