"""Property tests of POST /statefun: no input makes it answer 5xx, and no valid batch loses a record.

The budget is fixed for CI; raise it with GREETER_FUZZ_EXAMPLES (e.g. 100000) for a long run:
  GREETER_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/protocol/test_fuzz.py -q
"""

import os

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statefun.request_reply_pb2 import FromFunction

from greeter.config.settings import Settings
from greeter.protocol.messages import build_request, kafka_records, typed_value
from greeter.web.app import create_app
from protos.generated.greeter_pb2 import GreetRequest, SeenCount

EXAMPLES = int(os.environ.get("GREETER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

APP: Flask = create_app(Settings(max_request_bytes=1024 * 1024))
CLIENT = APP.test_client()

names = st.text(min_size=0, max_size=40)
raw_values = st.one_of(
    names.map(lambda name: GreetRequest(name=name).SerializeToString()),
    st.binary(max_size=64),
    st.none(),
)
typenames = st.sampled_from(
    ["type.googleapis.com/example.GreetRequest", "type.googleapis.com/example.GreetResponse", "", "x/y"]
)
arguments = st.builds(
    typed_value,
    st.one_of(st.just("type.googleapis.com/example.GreetRequest"), typenames),
    raw_values,
)
state_values = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=2**40).map(lambda n: SeenCount(seen=n).SerializeToString()),
)


@st.composite
def valid_batches(draw: st.DrawFn) -> tuple[bytes, int]:
    address_id = draw(names)
    batch = draw(st.lists(arguments, min_size=1, max_size=8))
    state = {"seen_count": typed_value("type.googleapis.com/example.SeenCount", draw(state_values))}
    return build_request("example/greeter", address_id, batch, state), len(batch)


def post(body: bytes) -> tuple[int, bytes]:
    response = CLIENT.post("/statefun", data=body)
    return response.status_code, response.data


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_get_a_5xx(body: bytes) -> None:
    status, _ = post(body)
    assert status < 500


@FUZZ
@given(valid_batches())
def test_every_invocation_of_a_valid_batch_is_greeted_or_dead_lettered(batch: tuple[bytes, int]) -> None:
    body, invocations = batch
    status, data = post(body)
    assert status == 200
    records = kafka_records(FromFunction.FromString(data))
    assert len(records) == invocations
    assert {record.topic for record in records} <= {"greetings", "names-dlq"}


@FUZZ
@given(valid_batches(), st.data())
def test_mutated_valid_batches_never_get_a_5xx(batch: tuple[bytes, int], data: st.DataObject) -> None:
    body = bytearray(batch[0])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(body)))
        operation = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if operation == "insert" or not body:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif operation == "flip":
            body[min(position, len(body) - 1)] ^= data.draw(st.integers(min_value=1, max_value=255))
        else:
            del body[min(position, len(body) - 1)]
    status, data_out = post(bytes(body))
    assert status < 500
    if status == 200 and data_out:
        reply = FromFunction.FromString(data_out)
        assert reply.HasField("invocation_result") or reply.HasField("incomplete_invocation_context")
