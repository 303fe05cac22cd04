"""The Flask app: POST /statefun for the runtime, /healthz, /readyz and /metrics for operators.

`greeter.app:app` is the contract gunicorn serves; create_app() builds a configured instance for tests.
"""

from flask import Flask, Response

from protos.generated.greeter_pb2 import DeadLetterReason

from .dispatch import Dispatcher
from .endpoint import StatefunEndpoint
from .function import build_functions
from .logs import configure_logging
from .metrics import GreeterMetrics
from .readiness import self_test
from .settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log_level)
    metrics = GreeterMetrics()
    functions = build_functions(
        settings,
        on_dead_letter=lambda _address, rejection: metrics.dead_letters.labels(
            reason=DeadLetterReason.Name(rejection.reason)
        ).inc(),
    )
    dispatcher = Dispatcher(functions)
    # One canned request through the real dispatcher: a broken protobuf backend or SDK fails here, at start.
    self_test(dispatcher, settings)

    app = Flask("greeter")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["GREETER_SETTINGS"] = settings
    app.wsgi_app = StatefunEndpoint(  # type: ignore[method-assign]
        app.wsgi_app, dispatcher, metrics, settings.max_request_bytes
    )

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
