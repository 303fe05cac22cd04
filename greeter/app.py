"""The Flask app: POST /statefun for the runtime, /healthz, /readyz and /metrics for operators.

`greeter.app:app` is the contract gunicorn serves; create_app() builds a configured instance for tests.
Under greeter-serve the worker (greeter/worker.py) answers /statefun on its event loop through the same
StatefunEndpoint, which it finds in `app.extensions["greeter"]`, and hands every other path to this app.
"""

from dataclasses import dataclass

from flask import Flask, Response

from protos.generated.greeter_pb2 import DeadLetterReason

from .dispatch import Dispatcher
from .endpoint import StatefunEndpoint, StatefunWsgi
from .function import Greeter
from .logs import configure_logging
from .metrics import GreeterMetrics
from .readiness import self_test
from .settings import Settings, load_settings
from .state_schema import check_released_state
from .wiring import FUNCTION_TYPE


@dataclass(frozen=True)
class GreeterService:
    """What a server needs beside the WSGI app: the settings it was built with and the /statefun endpoint."""

    settings: Settings
    endpoint: StatefunEndpoint


def create_app(settings: Settings | None = None, greeter_type: type[Greeter] = Greeter) -> Flask:
    """A Flask app serving the greeter with `settings` (from the environment when None); `greeter_type`: a new
    version of the function under test. Configures the `greeter` logger and runs the self-test first, so a broken
    protobuf backend or SDK fails here, and checks the state against what was released (StateSchemaError).
    """
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log_level)
    metrics = GreeterMetrics()
    greeter = greeter_type(
        settings,
        on_dead_letter=lambda _address, rejection: metrics.dead_letters.labels(
            reason=DeadLetterReason.Name(rejection.reason)
        ).inc(),
    )
    check_released_state(greeter.functions.for_typename(FUNCTION_TYPE).storage_spec.specs)
    dispatcher = Dispatcher(greeter.functions, on_empty_id=greeter.empty_id_records)
    # One canned request through the real dispatcher: a broken protobuf backend or SDK fails here, at start.
    self_test(dispatcher, settings)
    endpoint = StatefunEndpoint(dispatcher, metrics, settings.max_request_bytes)

    app = Flask("greeter")
    app.extensions["greeter"] = GreeterService(settings, endpoint)
    app.wsgi_app = StatefunWsgi(app.wsgi_app, endpoint)  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        # Ready = a canned request still goes through the function path end to end.
        self_test(dispatcher, settings)
        return Response("ready\n", mimetype="text/plain")

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")

    return app


app = create_app()
