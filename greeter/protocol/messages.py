"""The request-reply protocol's wire format from the runtime's side: ToFunction bytes in, egress records out.

Used by the readiness probe (greeter/web/self_test.py), the runtime stand-in for tests (greeter/protocol/harness.py) and
the benchmarks.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from statefun.kafka_egress_pb2 import KafkaProducerRecord
from statefun.request_reply_pb2 import FromFunction, ToFunction, TypedValue

KAFKA_RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"


def typed_value(typename: str, value: bytes | None) -> TypedValue:
    """A TypedValue; None = no value (has_value false), as the runtime sends absent state."""
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
    """One Kafka record a reply sends: the egress it goes through, its topic, key and value bytes."""

    egress: str  # e.g. example/greets
    topic: str
    key: str
    value: bytes


class NotAKafkaRecord(ValueError):
    """An egress message of the reply is not a Kafka producer record."""


def kafka_records(reply: FromFunction) -> list[EgressRecord]:
    """The Kafka records a reply sends to egresses; NotAKafkaRecord if it sends anything else."""
    records = []
    for egress in reply.invocation_result.outgoing_egresses:
        if egress.argument.typename != KAFKA_RECORD_TYPENAME:
            raise NotAKafkaRecord(f"egress argument is {egress.argument.typename}, not a Kafka record")
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
