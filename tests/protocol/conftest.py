from collections.abc import Callable

import pytest
from flask import Flask

from greeter.config.settings import Settings
from greeter.protocol.harness import RuntimeHarness
from greeter.web.app import create_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def post_via(app: Flask) -> Callable[[bytes], bytes]:
    client = app.test_client()

    def send(body: bytes) -> bytes:
        response = client.post("/statefun", data=body)
        assert response.status_code == 200, response.data
        assert response.headers["Content-Type"] == "application/octet-stream"
        return response.data

    return send


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runtime(clock: FakeClock) -> Callable[..., RuntimeHarness]:
    def make(settings: Settings | None = None) -> RuntimeHarness:
        app = create_app(settings or Settings())
        return RuntimeHarness(send=post_via(app), function_type="example/greeter", clock=clock)

    return make


@pytest.fixture
def app() -> Flask:
    return create_app(Settings(max_request_bytes=64 * 1024))
