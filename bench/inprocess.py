"""In-process handler throughput: how many requests one core turns into replies, with no HTTP around it.

Targets: `walkthrough` (the SDK's handle_sync in peer (a)'s environment, pure-Python protobuf; run with that
environment's python), `sdk` (handle_sync on upb protobuf: an event loop per call), `sdk-async` (the SDK's
handle_async awaited on a running uvloop) and `dispatcher` (greeter.protocol.dispatch's handle_async on a running
uvloop: the SDK's handler behind the 4xx checks, as the server runs it). Prints one JSON object.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

AsyncHandle = Callable[[bytes], Coroutine[Any, Any, object]]


def sync_target(name: str) -> Callable[[bytes], object]:
    if name == "walkthrough":
        sys.path.insert(0, str(Path(__file__).with_name("peers")))
        from walkthrough_app import handler  # type: ignore[import-not-found]  # peer (a)'s own environment

        return handler.handle_sync  # type: ignore[no-any-return]
    from statefun import RequestReplyHandler

    return RequestReplyHandler(_functions()).handle_sync  # type: ignore[no-any-return]


def async_target(name: str) -> AsyncHandle:
    from statefun import RequestReplyHandler

    from greeter.protocol.dispatch import Dispatcher

    if name == "sdk-async":
        return RequestReplyHandler(_functions()).handle_async  # type: ignore[no-any-return]
    return Dispatcher(_functions()).handle_async


def _functions() -> Any:
    from greeter.config.settings import Settings
    from greeter.function.greeter import build_functions

    return build_functions(Settings())


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


async def us_per_await(handle: AsyncHandle, body: bytes, seconds: float) -> float:
    """The same, awaiting `handle(body)` on the loop that is already running, as a server does."""
    for _ in range(200):
        await handle(body)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            await handle(body)
        calls += 100
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["walkthrough", "sdk", "sdk-async", "dispatcher"], required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--invocations", type=int, required=True, help="invocations per request body")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    body = args.body.read_bytes()
    if args.target in ("sdk-async", "dispatcher"):
        import uvloop  # not in the walkthrough's own virtualenv, which runs only the sync target

        us = uvloop.run(us_per_await(async_target(args.target), body, args.seconds))
    else:
        us = us_per_call(sync_target(args.target), body, args.seconds)
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
