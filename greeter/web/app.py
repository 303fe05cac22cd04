"""The Flask app: POST /statefun for the runtime, /healthz, /readyz and /metrics for operators.

`build_service(settings)` builds it, with the /statefun endpoint a server's own front can answer through
(greeter-serve's worker does, on its event loop). `create_app()` is the app alone, for tests and for the
contract's `greeter.app:app` (greeter/app.py).
"""

from dataclasses import dataclass

from flask import Flask, Response

from greeter.config.logs import configure_logging
from greeter.config.settings import Settings, load_settings
from greeter.config.wiring import FUNCTION_TYPE
from greeter.function.greeter import Greeter
from greeter.function.state_schema import check_released_state
from greeter.protocol.dispatch import Dispatcher
from greeter.web.endpoint import StatefunEndpoint, StatefunWsgi
from greeter.web.metrics import GreeterMetrics
from greeter.web.self_test import self_test
from protos.generated.greeter_pb2 import DeadLetterReason


@dataclass(frozen=True)
class GreeterService:
    """The greeter as a server needs it: the WSGI app and the /statefun endpoint that app answers through."""

    flask_app: Flask
    endpoint: StatefunEndpoint


def build_service(settings: Settings, greeter_type: type[Greeter] = Greeter) -> GreeterService:
    """The greeter served with `settings`; `greeter_type`: a new version of the function under test.
    Configures the `greeter` logger and runs the self-test first, so a broken protobuf backend or SDK fails here
    (SelfTestFailed), and checks the state against what was released (StateSchemaError).
    """
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

    return GreeterService(app, endpoint)


def create_app(settings: Settings | None = None, greeter_type: type[Greeter] = Greeter) -> Flask:
    """The Flask app of `build_service`, with `settings` from the environment when None."""
    return build_service(settings if settings is not None else load_settings(), greeter_type).flask_app
