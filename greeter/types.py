"""StateFun types for the greeter's protobuf messages (typename = type.googleapis.com/<full name>)."""

from typing import Any

from statefun import make_protobuf_type

from protos.generated.greeter_pb2 import DeadLetter, GreetRequest, GreetResponse, SeenCount

GREET_REQUEST_TYPE: Any = make_protobuf_type(GreetRequest)
GREET_RESPONSE_TYPE: Any = make_protobuf_type(GreetResponse)
SEEN_COUNT_TYPE: Any = make_protobuf_type(SeenCount)
DEAD_LETTER_TYPE: Any = make_protobuf_type(DeadLetter)
