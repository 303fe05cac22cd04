"""In-process handler throughput: how many requests one core turns into replies, with no HTTP around it.

Targets: `walkthrough` (the SDK's handle_sync in peer (a)'s environment, pure-Python protobuf; run with that
environment's python), `sdk` (handle_sync on upb protobuf) and `dispatcher` (ours, greeter.dispatch).
Prints one JSON object.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def target(name: str) -> Callable[[bytes], object]:
    if name == "walkthrough":
        sys.path.insert(0, str(Path(__file__).with_name("peers")))
        from walkthrough_app import handler  # type: ignore[import-not-found]  # peer (a)'s own environment

        return handler.handle_sync  # type: ignore[no-any-return]
    from statefun import RequestReplyHandler

    from greeter.dispatch import Dispatcher
    from greeter.function import build_functions
    from greeter.settings import Settings

    functions = build_functions(Settings())
    return RequestReplyHandler(functions).handle_sync if name == "sdk" else Dispatcher(functions).handle


def us_per_call(handle: Callable[[bytes], object], body: bytes, seconds: float) -> float:
    """Microseconds per call of `handle(body)`, after a warm-up, over `seconds`."""
    for _ in range(200):  # warm up
        handle(body)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            handle(body)
        calls += 100
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["walkthrough", "sdk", "dispatcher"], required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--invocations", type=int, required=True, help="invocations per request body")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    handle, body = target(args.target), args.body.read_bytes()
    us = us_per_call(handle, body, args.seconds)
    print(
        json.dumps(
            {
                "requests_per_s": 1e6 / us,
                "invocations_per_s": 1e6 / us * args.invocations,
                "us_per_request": us,
            }
        )
    )


if __name__ == "__main__":
    main()
