"""The places that lean on a dependency's internals, each held here to what it was written against.

- greeter/server/bounded_http.py subclasses uvicorn's HttpToolsProtocol: its bounds (read deadline, connection
  cap, head limits, drain) need the connection's own state, which uvicorn has no public hook for.
- greeter/server/worker.py runs uvicorn_worker's `_serve` on a loop of its own (`run` is otherwise the same).
- greeter/protocol/sdk_batch.py runs the rest of statefun's RequestReplyHandler.handle_async on a batch the
  Dispatcher parsed already (the SDK's handler takes bytes only), through request_reply_v3's helpers, and writes
  the context's `_caller` as handle_async does.
- greeter/web/metrics.py writes prometheus_client's Histogram values in bulk (`_upper_bounds`, `_sum`,
  `_buckets`); tests/unit/test_metrics.py checks the result against one observe() per value, byte for byte.

A new version of any of them fails here first, naming the file to re-read against it; then move the pin.
"""

import hashlib
import inspect
from importlib.metadata import version

import pytest
from prometheus_client import Histogram
from statefun.request_reply_v3 import RequestReplyHandler, UserFacingContext
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn_worker import UvicornWorker

CHECKED_AGAINST = {
    "apache-flink-statefun": ("3.3.0", "greeter/protocol/sdk_batch.py"),
    "uvicorn": ("0.55.0", "greeter/server/bounded_http.py"),
    "uvicorn-worker": ("0.4.0", "greeter/server/worker.py"),
    "prometheus-client": ("0.26.0", "greeter/web/metrics.py"),
}


@pytest.mark.parametrize("distribution", sorted(CHECKED_AGAINST))
def test_each_dependency_is_the_version_its_adapter_was_checked_against(distribution: str) -> None:
    checked, adapter = CHECKED_AGAINST[distribution]
    assert version(distribution) == checked, f"re-read {adapter} against {distribution} {version(distribution)}"


def test_the_sdks_handler_is_still_the_one_sdk_batch_follows() -> None:
    # sdk_batch.run_batch is handle_async after its parse and target lookup, step by step: any edit of
    # handle_async (a step added, reordered or changed) changes this digest and must be carried over there.
    source = inspect.getsource(RequestReplyHandler.handle_async)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    assert digest == "07b467ba9bb5ca51ec39b6ada8d28847cf542711731a7cb493a982396c20ad0a", (
        "re-read greeter/protocol/sdk_batch.py against RequestReplyHandler.handle_async"
    )
    # The caller an invocation sees is the slot run_batch writes; the property has no setter.
    assert "_caller" in UserFacingContext.__slots__
    assert inspect.getsource(UserFacingContext.caller.fget).strip().endswith("return self._caller")
    assert UserFacingContext.caller.fset is None


def test_uvicorns_protocol_still_has_what_bounded_http_uses() -> None:
    protocol = inspect.getsource(HttpToolsProtocol)
    used = ["self.connections", "self.cycle", "self.timeout_keep_alive_task", "self.timeout_keep_alive ",
            "def timeout_keep_alive_handler", "def send_400_response", "self.client", "self.transport",
            "self.loop", "self.headers", "def on_url", "def on_headers_complete", "def on_message_begin",
            "def on_message_complete", "def shutdown", "def data_received"]  # fmt: skip
    assert [name for name in used if name not in protocol] == []
    cycle = inspect.getsource(RequestResponseCycle)
    assert [
        name for name in ("self.keep_alive", "self.response_started", "self.response_complete") if name not in cycle
    ] == []


def test_uvicorn_workers_run_is_still_only_its_serve_on_the_configured_loop() -> None:
    # GreeterWorker.run replaces it to pass a loop factory with the handshake deadline; anything more upstream
    # adds to run() would be skipped.
    body = [line.strip() for line in inspect.getsource(UvicornWorker.run).strip().splitlines()]
    assert body[1:] == ["return asyncio_run(self._serve(), loop_factory=self.config.get_loop_factory())"]
    assert inspect.iscoroutinefunction(UvicornWorker._serve)


def test_prometheus_histograms_still_hold_what_metrics_writes_in_bulk() -> None:
    histogram = Histogram("adapter_check_seconds", "", buckets=(1.0, 2.0), registry=None)
    assert histogram._upper_bounds == [1.0, 2.0, float("inf")]
    assert len(histogram._buckets) == 3 and hasattr(histogram._sum, "inc")
