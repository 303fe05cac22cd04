"""New versions of the greeter whose per-user state evolved, for the state-evolution tests: each built from the
product's Greeter with another `state_type` and `next_state`, its message defined in a descriptor pool of its own
(the product's example.SeenCount stays as released in the default pool). Served by greeter-serve's main as
`python -m tests.support.evolved VERSION [greeter-serve's flags]`, VERSION one of SERVED."""

from __future__ import annotations

import sys
import time
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor

from greeter.function.greeter import Greeter
from greeter.function.types import ProtobufType
from greeter.server import serve


def seen_count_class(fields: list[tuple[str, int, int]]) -> Any:
    """An example.SeenCount message class with `fields` (name, number, FieldDescriptor type), in a new pool."""
    proto = descriptor_pb2.FileDescriptorProto(name="evolved.proto", package="example", syntax="proto3")
    message = proto.message_type.add(name="SeenCount")
    for name, number, kind in fields:
        message.field.add(name=name, number=number, type=kind, label=FieldDescriptor.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("example.SeenCount"))


# A compatible change: a new field under a new number.
SeenCountV2 = seen_count_class(
    [("seen", 1, FieldDescriptor.TYPE_INT64), ("last_seen_ms", 2, FieldDescriptor.TYPE_INT64)]
)
# An incompatible one: the released field 1 with another type.
SeenCountAsText = seen_count_class([("seen", 1, FieldDescriptor.TYPE_STRING)])


class GreeterV2(Greeter):
    """The greeter with SeenCount.last_seen_ms: when the user was last greeted (ms since the epoch)."""

    state_type = ProtobufType(SeenCountV2)

    def next_state(self, previous: Any) -> Any:
        seen = (previous.seen if previous is not None else 0) + 1
        return SeenCountV2(seen=seen, last_seen_ms=time.time_ns() // 1_000_000)


class GreeterCountAsText(Greeter):
    """A greeter that would store the count as text under the released name: it must not start."""

    state_type = ProtobufType(SeenCountAsText)

    def next_state(self, previous: Any) -> Any:
        return SeenCountAsText(seen=str(int(previous.seen) + 1 if previous is not None else 1))


SERVED = {"v2": GreeterV2, "count-as-text": GreeterCountAsText}

if __name__ == "__main__":
    sys.exit(serve.main(sys.argv[2:], greeter_type=SERVED[sys.argv[1]]))
