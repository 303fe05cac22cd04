"""A stand-in for the StateFun runtime, to test a remote function in-process, without Kafka or Flink.

`RuntimeHarness(send, function_type)` delivers batches the way the runtime does: it keeps state per
address between calls, answers the function's missing-state replies (registers the specs and resends the
batch), expires state on an injectable clock (`expire_after_call` / `expire_after_write`), and decodes
the Kafka egress records of each reply. `send` is anything from ToFunction bytes to FromFunction bytes:
`Dispatcher(functions).handle(body).body`, a Flask test client's POST, or an HTTP call.

    from statefun import StatefulFunctions
    from greeter.protocol.dispatch import Dispatcher
    from greeter.protocol.harness import RuntimeHarness, typed_value

    runtime = RuntimeHarness(send=lambda body: Dispatcher(functions).handle(body).body, function_type="ns/fn")
    records = runtime.invoke("some-id", [typed_value("io.statefun.types/string", b"...")])
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from statefun.request_reply_pb2 import FromFunction, TypedValue

from greeter.protocol.messages import EgressRecord, build_request, kafka_records, typed_value

__all__ = ["EgressRecord", "RuntimeHarness", "typed_value"]


@dataclass
class _Registered:
    typename: str
    expire_after_ms: int  # 0 = never
    mode: int


@dataclass
class _Cell:
    value: TypedValue
    touched_at: float


@dataclass
class RuntimeHarness:
    """A stand-in for the runtime's state handling. `send` is any callable from ToFunction bytes to reply bytes."""

    send: Callable[[bytes], bytes]
    function_type: str
    clock: Callable[[], float] = time.monotonic
    specs: dict[str, _Registered] = field(default_factory=dict)
    cells: dict[tuple[str, str], _Cell] = field(default_factory=dict)
    missing_state_replies: int = 0

    def invoke(self, address_id: str, arguments: Sequence[TypedValue]) -> list[EgressRecord]:
        """Deliver one batch to `address_id`, as the runtime does, and return the egress records."""
        for _ in range(2):  # at most one missing-state round trip, as in the runtime
            self._expire(address_id)
            state = {name: self._value(address_id, name) for name in self.specs}
            reply = FromFunction()
            reply.ParseFromString(self.send(build_request(self.function_type, address_id, arguments, state)))
            if reply.HasField("incomplete_invocation_context"):
                self.missing_state_replies += 1
                for missing in reply.incomplete_invocation_context.missing_values:
                    spec = missing.expiration_spec
                    self.specs[missing.state_name] = _Registered(
                        missing.type_typename, spec.expire_after_millis, spec.mode
                    )
                continue
            self._apply(address_id, reply)
            return kafka_records(reply)
        raise AssertionError("the function asked for state twice for one batch")

    def stored(self, address_id: str, state_name: str) -> TypedValue | None:
        """The value held for `state_name` at `address_id`, or None.
        Expiry is applied only by invoke: a value past its TTL still shows here until the next call.
        """
        cell = self.cells.get((address_id, state_name))
        return cell.value if cell else None

    def _value(self, address_id: str, state_name: str) -> TypedValue:
        cell = self.cells.get((address_id, state_name))
        return cell.value if cell else typed_value(self.specs[state_name].typename, None)

    def _apply(self, address_id: str, reply: FromFunction) -> None:
        now = self.clock()
        for mutation in reply.invocation_result.state_mutations:
            key = (address_id, mutation.state_name)
            if mutation.mutation_type == FromFunction.PersistedValueMutation.DELETE:
                self.cells.pop(key, None)
            else:
                self.cells[key] = _Cell(mutation.state_value, now)
        # expire_after_call: any call refreshes every value of the address, written or not
        for name, spec in self.specs.items():
            cell = self.cells.get((address_id, name))
            if cell and spec.mode == FromFunction.ExpirationSpec.AFTER_INVOKE:
                cell.touched_at = now

    def _expire(self, address_id: str) -> None:
        now = self.clock()
        for name, spec in self.specs.items():
            cell = self.cells.get((address_id, name))
            if cell and spec.expire_after_ms and (now - cell.touched_at) * 1000 >= spec.expire_after_ms:
                del self.cells[(address_id, name)]
