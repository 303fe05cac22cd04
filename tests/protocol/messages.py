"""Typed values and decoders shared by the protocol tests."""

from statefun.request_reply_pb2 import TypedValue

from greeter.protocol.messages import EgressRecord, typed_value
from protos.generated.greeter_pb2 import DeadLetter, GreetRequest, GreetResponse

GREET_REQUEST = "type.googleapis.com/example.GreetRequest"


def greet(name: str) -> TypedValue:
    return typed_value(GREET_REQUEST, GreetRequest(name=name).SerializeToString())


def raw(value: bytes, typename: str = GREET_REQUEST) -> TypedValue:
    return typed_value(typename, value)


def greetings(records: list[EgressRecord]) -> list[tuple[str, str]]:
    out = []
    for record in records:
        assert record.egress == "example/greets"
        assert record.topic == "greetings", record
        response = GreetResponse.FromString(record.value)
        assert record.key == response.name
        out.append((response.name, response.greeting))
    return out


def dead_letters(records: list[EgressRecord]) -> list[DeadLetter]:
    out = []
    for record in records:
        assert record.topic == "names-dlq", record
        letter = DeadLetter.FromString(record.value)
        assert record.key == letter.address_id
        out.append(letter)
    return out
