"""The Quix Streams peer: the greeter's job as a Quix Streams application, for the pipeline benchmark.

Same semantics as the StateFun pipeline: consume GreetRequest bytes (key = name), count each name in the
application's state store (RocksDB, backed by a changelog topic: Quix's defaults), and produce the walkthrough's
GreetResponse, key = name, to its own output topic, exactly-once (Kafka transactions committed every
--commit-interval seconds, which the benchmark sets to the runtime's checkpoint interval).

Small and honest: Quix's documented defaults, plus what its serializer docs recommend for throughput: the value
is handed to the dataframe as the protobuf message itself and the reply serialized from the message, with no
dict conversion (what `ProtobufDeserializer(to_dict=False)` and `ProtobufSerializer` with a message do; written
out here because quixstreams' `protobuf` extra pins protobuf<7 and the project's generated code needs 7).
Unlike the greeter it has no dead-letter path: the benchmark's input is all valid.

Runs in its own virtualenv (bench/requirements-quix.txt) with the repository root on PYTHONPATH, so the
messages and the greeting text are the project's own. SIGTERM or Ctrl-C: Quix stops the loop and commits.
Usage: PYTHONPATH=. bench/.venvs/quix/bin/python bench/peers/quix_app.py --broker HOST:PORT --commit-interval 2
"""

import argparse

from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer

from greeter.function.greeting import compute_greeting
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse


class GreetRequestDeserializer(Deserializer):
    def __call__(self, value: bytes, ctx: SerializationContext) -> GreetRequest:
        return GreetRequest.FromString(value)


class MessageSerializer(Serializer):
    def __call__(self, value: GreetResponse, ctx: SerializationContext) -> bytes:
        return value.SerializeToString()


def greet(request: GreetRequest, state: State[str, int]) -> GreetResponse:
    seen = state.get("seen_count", 0) + 1
    state.set("seen_count", seen)
    return GreetResponse(name=request.name, greeting=compute_greeting(request.name, seen))


def build(args: argparse.Namespace) -> Application:
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",  # nothing the benchmark sends before the first assignment is skipped
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        processing_guarantee="exactly-once",
    )
    requests = app.topic(args.input, value_deserializer=GreetRequestDeserializer())
    greetings = app.topic(args.output, value_serializer=MessageSerializer())
    app.dataframe(requests).apply(greet, stateful=True).to_topic(greetings)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True, help="bootstrap servers, HOST:PORT")
    parser.add_argument("--input", default="names-quix")
    parser.add_argument("--output", default="greetings-quix")
    parser.add_argument("--group", default="greeter-quix")
    parser.add_argument("--commit-interval", type=float, required=True, help="seconds; the checkpoint interval")
    parser.add_argument("--state-dir", default="state")
    build(parser.parse_args()).run()


if __name__ == "__main__":
    main()
