"""Plays the StateFun runtime's side of the request-reply protocol, for tests and probes of any function.

`build_request` makes ToFunction bytes; `RuntimeHarness` keeps state per address between calls, answers
the function's missing-state replies the way the runtime does (register the specs, resend the batch),
expires state on an injectable clock, and decodes the egress records of each reply.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from statefun.kafka_egress_pb2 import KafkaProducerRecord
from statefun.request_reply_pb2 import FromFunction, ToFunction, TypedValue

KAFKA_RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"


def typed_value(typename: str, value: bytes | None) -> TypedValue:
    return TypedValue(typename=typename, has_value=value is not None, value=value or b"")


def build_request(
    function_type: str,
    address_id: str,
    arguments: Iterable[TypedValue],
    state: dict[str, TypedValue] | None = None,
) -> bytes:
    """ToFunction bytes: one invocation batch for `function_type`/`address_id` carrying `state`."""
    namespace, _, name = function_type.rpartition("/")
    request = ToFunction()
    batch = request.invocation
    batch.target.namespace, batch.target.type, batch.target.id = namespace, name, address_id
    for state_name, value in (state or {}).items():
        batch.state.add(state_name=state_name, state_value=value)
    for argument in arguments:
        batch.invocations.add().argument.CopyFrom(argument)
    serialized: bytes = request.SerializeToString()
    return serialized


@dataclass(frozen=True)
class EgressRecord:
    egress: str  # e.g. example/greets
    topic: str
    key: str
    value: bytes


def kafka_records(reply: FromFunction) -> list[EgressRecord]:
    records = []
    for egress in reply.invocation_result.outgoing_egresses:
        if egress.argument.typename != KAFKA_RECORD_TYPENAME:
            raise AssertionError(f"egress argument is {egress.argument.typename}, not a Kafka record")
        record = KafkaProducerRecord()
        record.ParseFromString(egress.argument.value)
        records.append(
            EgressRecord(
                f"{egress.egress_namespace}/{egress.egress_type}",
                record.topic,
                record.key,
                record.value_bytes,
            )
        )
    return records


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
