"""StateFun types for the greeter's protobuf messages (typename = type.googleapis.com/<full name>).

The SDK's make_protobuf_type wraps each message class in Python closures; this Type hands the SDK the
message class's own upb methods instead, so every state read, state write and egress record costs a
C call rather than three Python ones. Same typenames, same bytes.
"""

from typing import Any

from google.protobuf.message import Message
from statefun import Type, TypeSerializer

from greeter.config.wiring import TYPENAME_PREFIX
from protos.generated.greeter_pb2 import DeadLetter, GreetRequest, GreetResponse, SeenCount


class _ProtobufSerializer(TypeSerializer):  # type: ignore[misc]
    __slots__ = ("deserialize", "serialize")

    def __init__(self, message_class: type[Message]) -> None:
        self.serialize = message_class.SerializeToString  # unbound: serialize(value) -> bytes
        self.deserialize = message_class.FromString


class ProtobufType(Type):  # type: ignore[misc]
    """A StateFun Type for a protobuf message class, serialized by the class's own upb methods."""

    __slots__ = ("_serializer", "message_class")

    def __init__(self, message_class: type[Message]) -> None:
        super().__init__(f"{TYPENAME_PREFIX}/{message_class.DESCRIPTOR.full_name}")
        self.message_class = message_class
        self._serializer = _ProtobufSerializer(message_class)

    def serializer(self) -> Any:
        """The SDK's hook: this type's serializer, built once (the class's SerializeToString and FromString)."""
        return self._serializer


GREET_REQUEST_TYPE = ProtobufType(GreetRequest)
GREET_RESPONSE_TYPE = ProtobufType(GreetResponse)
SEEN_COUNT_TYPE = ProtobufType(SeenCount)
DEAD_LETTER_TYPE = ProtobufType(DeadLetter)
