"""The architecture's floor: the cheapest remote function that still passes the pipeline's checks. The bare pair's
server (uvicorn's worker under gunicorn, the SDK's handle_async; bench/peers/uvicorn_bare.py) serving a function
that only counts and greets: no validation, dead letters, bounds or metrics. The state (its spec, so its name and
TTL) and the greeting record are the greeter's own, so what it writes is what the greeter would. The pipeline
benchmark serves it in the greeter's place (`--with-floor`, bench/floor.py):
gunicorn -k uvicorn_worker.UvicornWorker --workers N --bind ADDRESS bench.peers.floor:app
"""

from typing import Any

from statefun import RequestReplyHandler, StatefulFunctions

from bench.peers.uvicorn_bare import asgi_app
from greeter.config.settings import Settings, load_settings
from greeter.config.wiring import FUNCTION_TYPE
from greeter.function.greeter import greeting_record, seen_count_spec
from protos.generated.greeter_pb2 import SeenCount


def floor_functions(settings: Settings) -> StatefulFunctions:
    """example/greeter with the greeter's state and greeting and nothing else: every record is greeted."""
    spec = seen_count_spec(settings.seen_count_ttl_seconds)
    functions = StatefulFunctions()

    def greet(context: Any, _message: Any) -> None:  # the name is the address id; the record's body is not read
        previous = getattr(context.storage, spec.name)
        seen = (previous.seen if previous is not None else 0) + 1
        setattr(context.storage, spec.name, SeenCount(seen=seen))
        context.send_egress(greeting_record(context.address.id, seen))

    functions.register(FUNCTION_TYPE, greet, specs=[spec])
    return functions


app = asgi_app(RequestReplyHandler(floor_functions(load_settings())))
