"""HTTP behaviour of the app: status codes, content types, limits, probes, metrics."""

import logging

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from greeter.config.settings import Settings
from greeter.function.types import SEEN_COUNT_TYPE
from greeter.protocol.messages import build_request, typed_value
from greeter.web.app import create_app
from protos.generated.greeter_pb2 import SeenCount
from tests.support.failing import BUG, FailingGreeter

from .messages import greet

GOOD = build_request("example/greeter", "Ada", [greet("Ada")], {})
# Ada, seen once before: the runtime sends her count along.
RETURNING = build_request(
    "example/greeter",
    "Ada",
    [greet("Ada")],
    {"seen_count": typed_value(SEEN_COUNT_TYPE.typename, SeenCount(seen=1).SerializeToString())},
)


def test_reply_content_type_is_exactly_octet_stream(app: Flask) -> None:
    response = app.test_client().post("/statefun", data=GOOD)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "body",
    [b"", b"not protobuf at all \xff\xfe", b"\x08\x96\x01", b"\x0a\x05hello"],
    ids=["empty", "random bytes", "valid protobuf, not a ToFunction", "unknown field only"],
)
def test_a_body_that_is_not_a_to_function_is_400_with_one_line(app: Flask, body: bytes) -> None:
    response = app.test_client().post("/statefun", data=body)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert text.count("\n") == 1 and text.strip()
    assert "Traceback" not in text


def test_a_batch_without_a_target_is_400(app: Flask) -> None:
    response = app.test_client().post("/statefun", data=build_request("/", "Ada", [greet("Ada")]))
    assert response.status_code == 400
    assert b"names no target function" in response.data


def test_an_unknown_function_is_404_and_logged(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("greeter")
    logger.propagate = True  # let caplog see the JSON logger's records
    try:
        with caplog.at_level(logging.ERROR, logger="greeter"):
            response = app.test_client().post("/statefun", data=build_request("example/stranger", "x", []))
    finally:
        logger.propagate = False
    assert response.status_code == 404
    assert b"example/stranger" in response.data
    assert any(getattr(r, "function", None) == "example/stranger" for r in caplog.records)


def test_a_body_over_the_limit_is_413(app: Flask) -> None:
    response = app.test_client().post("/statefun", data=b"\x00" * (64 * 1024 + 1))
    assert response.status_code == 413


@pytest.mark.parametrize("length", ["twelve", "-5"])
def test_a_content_length_that_is_not_a_number_is_400_and_the_body_unread(app: Flask, length: str) -> None:
    # The WSGI route checks it itself (under greeter-serve, llhttp refuses such a header first): a negative
    # length would otherwise read the whole stream, past the 413 bound.
    environ = EnvironBuilder(method="POST", path="/statefun", data=GOOD).get_environ()
    environ["CONTENT_LENGTH"] = length  # Flask's test client would set the true one
    answered: list[tuple[str, dict[str, str]]] = []
    body = app.wsgi_app(environ, lambda status, headers: answered.append((status, dict(headers))))
    assert answered[0][0] == "400 Bad Request"
    assert b"".join(body) == b"Content-Length is not a number\n"
    assert answered[0][1]["Connection"] == "close"


def test_get_on_the_function_path_is_405(app: Flask) -> None:
    response = app.test_client().get("/statefun")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_probes(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_count_invocations_dead_letters_batches_and_latency(app: Flask) -> None:
    client = app.test_client()
    client.post("/statefun", data=build_request("example/greeter", "Ada", [greet("Ada")], {}))  # asks for state
    state = {"seen_count": greet("unused")}
    state["seen_count"].typename = "type.googleapis.com/example.SeenCount"
    state["seen_count"].has_value = False
    client.post("/statefun", data=build_request("example/greeter", "Ada", [greet("Ada"), greet("Bob")], state))
    client.post("/statefun", data=b"junk")
    text = client.get("/metrics").get_data(as_text=True)
    assert "greeter_invocations_per_request_sum 2.0" in text
    assert 'greeter_dead_letters_total{reason="NAME_MISMATCH"} 1.0' in text
    assert "greeter_missing_state_replies_total 1.0" in text
    assert 'greeter_invocations_per_request_bucket{le="2.0"} 1.0' in text
    assert 'greeter_invocations_per_request_bucket{le="1.0"} 0.0' in text
    assert "greeter_request_seconds_count 2.0" in text  # both answered 200, the state request included
    assert 'greeter_rejected_requests_total{status="400"} 1.0' in text


def test_state_of_another_type_is_400_not_a_crash(app: Flask) -> None:
    state = {"seen_count": typed_value("type.googleapis.com/example.Other", b"\x08\x01")}
    response = app.test_client().post("/statefun", data=build_request("example/greeter", "Ada", [greet("Ada")], state))
    assert response.status_code == 400
    assert b"state 'seen_count' holds 'type.googleapis.com/example.Other'" in response.data


def test_state_that_does_not_decode_is_400_not_a_crash(app: Flask) -> None:
    state = {"seen_count": typed_value("type.googleapis.com/example.SeenCount", b"\xff\xff")}
    response = app.test_client().post("/statefun", data=build_request("example/greeter", "Ada", [greet("Ada")], state))
    assert response.status_code == 400
    assert b"is not a valid type.googleapis.com/example.SeenCount" in response.data


def test_a_function_that_raises_is_500_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    client = create_app(Settings(), greeter_type=FailingGreeter).test_client()
    assert client.post("/statefun", data=GOOD).status_code == 200  # a first visit: the bug is not on its path
    logger = logging.getLogger("greeter")
    logger.propagate = True  # let caplog see the JSON logger's records
    try:
        with caplog.at_level(logging.ERROR, logger="greeter"):
            response = client.post("/statefun", data=RETURNING)
    finally:
        logger.propagate = False
    assert response.status_code == 500
    assert response.get_data(as_text=True) == "the function failed: see the greeter's log\n"  # no detail of the error
    failures = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert failures and all(r.exc_info and str(r.exc_info[1]) == BUG for r in failures)  # the traceback is logged
    text = client.get("/metrics").get_data(as_text=True)
    assert 'greeter_failed_requests_total{status="500"} 1.0' in text
    assert "greeter_request_seconds_count 1.0" in text  # the 500 is not counted as answered


def counter_series(text: str) -> dict[str, float]:
    """The refusal, failure and dead-letter series of a /metrics text, with their values."""
    prefixes = ("greeter_rejected_requests_total", "greeter_failed_requests_total", "greeter_dead_letters_total")
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefixes)
    }


def test_every_refusal_failure_and_dead_letter_series_is_there_from_the_start(app: Flask) -> None:
    # Prometheus counts an increase from a sample before it: a series that first appeared at 1 would hide the first
    # refusal, failure or dead letter from rate() and the alert rules.
    client = app.test_client()
    before = counter_series(client.get("/metrics").get_data(as_text=True))
    assert set(before.values()) == {0.0}
    assert 'greeter_failed_requests_total{status="500"}' in before
    assert 'greeter_dead_letters_total{reason="UNEXPECTED_TYPE"}' in before
    # Every refusal the endpoint answers, and a dead letter: each counted in a series that was there already.
    assert client.get("/statefun").status_code == 405
    assert client.post("/statefun", data=b"junk").status_code == 400
    assert client.post("/statefun", data=build_request("example/stranger", "x", [])).status_code == 404
    assert client.post("/statefun", data=b"\x00" * (64 * 1024 + 1)).status_code == 413
    state = {"seen_count": typed_value(SEEN_COUNT_TYPE.typename, None)}
    assert (
        client.post("/statefun", data=build_request("example/greeter", "Ada", [greet("Bob")], state)).status_code == 200
    )
    after = counter_series(client.get("/metrics").get_data(as_text=True))
    assert after.keys() == before.keys()
    assert {key for key, value in after.items() if value} == {
        'greeter_rejected_requests_total{status="405"}',
        'greeter_rejected_requests_total{status="400"}',
        'greeter_rejected_requests_total{status="404"}',
        'greeter_rejected_requests_total{status="413"}',
        'greeter_dead_letters_total{reason="NAME_MISMATCH"}',
    }
