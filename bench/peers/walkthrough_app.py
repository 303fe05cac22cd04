"""Peer (a): the StateFun walkthrough's greeter as written, ported only as far as the 3.3 API requires.

Flask's built-in server, RequestReplyHandler.handle_sync, and the protobuf pip resolves for the SDK's
`protobuf<4` pin (pure Python on CPython 3.11). Runs in its own virtualenv (bench/requirements-walkthrough.txt),
so it cannot import the project's generated code (built for protobuf 7): the messages are declared here.
"""

import argparse
import logging

from flask import Flask, make_response, request
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from statefun import RequestReplyHandler, StatefulFunctions, ValueSpec, kafka_egress_message, make_protobuf_type


def _messages() -> tuple[type, type, type]:
    file = descriptor_pb2.FileDescriptorProto(name="walkthrough.proto", package="example", syntax="proto3")
    for name, fields in {
        "GreetRequest": [("name", 1, 9)],
        "GreetResponse": [("name", 1, 9), ("greeting", 2, 9)],
        "SeenCount": [("seen", 1, 3)],
    }.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind in fields:
            message.field.add(name=field_name, number=number, type=kind, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    classes = message_factory.GetMessages([file], pool=pool)
    return classes["example.GreetRequest"], classes["example.GreetResponse"], classes["example.SeenCount"]


GreetRequest, GreetResponse, SeenCount = _messages()
GREET_REQUEST = make_protobuf_type(GreetRequest)
GREET_RESPONSE = make_protobuf_type(GreetResponse)
SEEN_COUNT = make_protobuf_type(SeenCount)

functions = StatefulFunctions()


def compute_greeting(name: str, seen: int) -> str:
    templates = ["", "Welcome %s", "Nice to see you again %s", "Third time is a charm %s"]
    if seen < len(templates):
        return templates[seen] % name
    return "Nice to see you at the %d-nth time %s!" % (seen, name)  # noqa: UP031 - the walkthrough's code


@functions.bind(typename="example/greeter", specs=[ValueSpec(name="seen_count", type=SEEN_COUNT)])
def greet(context, message):
    greet_request = message.as_type(GREET_REQUEST)
    state = context.storage.seen_count or SeenCount()
    state.seen += 1
    context.storage.seen_count = state
    response = GreetResponse(name=greet_request.name, greeting=compute_greeting(greet_request.name, state.seen))
    context.send_egress(
        kafka_egress_message(
            typename="example/greets",
            topic="greetings",
            key=greet_request.name,
            value=response,
            value_type=GREET_RESPONSE,
        )
    )


handler = RequestReplyHandler(functions)
app = Flask(__name__)


@app.route("/statefun", methods=["POST"])
def handle():
    response = make_response(handler.handle_sync(request.data))
    response.headers.set("Content-Type", "application/octet-stream")
    return response


@app.route("/readyz")
def ready():
    return "ready\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    app.run(host="127.0.0.1", port=parser.parse_args().port)
