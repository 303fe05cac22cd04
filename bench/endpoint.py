"""Benchmark of the function endpoint: our greeter against the peers, same request bodies, one run.

Each server runs pinned to CPU 0 (one process or one gunicorn worker: the figures are per server core);
wrk runs on CPU 1 with 8 connections. Bodies carry 1, 10 and 100 invocations for one address, with state.
Usage: scripts/bench-endpoint [--seconds N] [--repeat N]   (results: bench/results/endpoint-*.json)
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from statefun.request_reply_pb2 import FromFunction

from bench.wrk import run_wrk
from greeter.harness import build_request, kafka_records, typed_value
from protos.generated.greeter_pb2 import GreetRequest, GreetResponse, SeenCount

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WALKTHROUGH_PYTHON = ROOT / "bench" / ".venvs" / "walkthrough" / "bin" / "python"
VENV_BIN = Path(sys.executable).parent
BATCHES = (1, 10, 100)
SERVER_CPU, LOAD_CPU = 0, 1


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]


def servers(port: int) -> list[Server]:
    serve = [str(VENV_BIN / "greeter-serve"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    return [
        Server(
            "walkthrough as written (Flask dev server, handle_sync, pure-Python protobuf)",
            [str(WALKTHROUGH_PYTHON), "bench/peers/walkthrough_app.py", "--port", str(port)],
            {},
        ),
        Server(
            "playground way (aiohttp, handle_async, upb)",
            [sys.executable, "bench/peers/aiohttp_app.py", "--port", str(port)],
            {},
        ),
        Server("greeter on gunicorn's stock sync worker", serve, {"GREETER_WORKER_CLASS": "sync"}),
        Server("greeter (KeepAliveWorker)", serve, {}),
    ]


def write_bodies(directory: Path) -> dict[int, Path]:
    state = {"seen_count": typed_value("type.googleapis.com/example.SeenCount", SeenCount(seen=3).SerializeToString())}
    argument = typed_value("type.googleapis.com/example.GreetRequest", GreetRequest(name="alice").SerializeToString())
    bodies = {}
    for batch in BATCHES:
        path = directory / f"body-{batch}.bin"
        path.write_bytes(build_request("example/greeter", "alice", [argument] * batch, state))
        bodies[batch] = path
    return bodies


def check_reply(port: int, body: bytes) -> None:
    """The server must answer like the greeter does, or its speed means nothing."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/statefun", data=body, headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = FromFunction.FromString(response.read())
    (record,) = kafka_records(reply)
    assert GreetResponse.FromString(record.value).greeting == "Nice to see you at the 4-nth time alice!", reply


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (gunicorn master + workers)."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        pids += [int(child) for child in children]
    return total / 1024


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server not ready after 30 s")


def measure_server(server: Server, port: int, bodies: dict[int, Path], seconds: int, repeat: int) -> list[dict]:
    log = (RESULTS / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CPU), *server.command],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **server.env},
        start_new_session=True,
    )
    rows = []
    try:
        wait_ready(port, process)
        check_reply(port, bodies[1].read_bytes())
        for batch, body in bodies.items():
            runs = [run_wrk(f"http://127.0.0.1:{port}/statefun", body, seconds, 8, LOAD_CPU) for _ in range(repeat)]
            rates = [r.requests_per_second for r in runs]
            rows.append(
                {
                    "server": server.name,
                    "invocations_per_request": batch,
                    "requests_per_s_median": statistics.median(rates),
                    "requests_per_s_min": min(rates),
                    "invocations_per_s_median": statistics.median(rates) * batch,
                    "p50_ms": statistics.median(r.p50_ms for r in runs),
                    "p99_ms": statistics.median(r.p99_ms for r in runs),
                    "errors": sum(r.errors for r in runs),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
        rss = peak_rss_mb(process.pid)
        for row in rows:
            row["peak_rss_mb"] = round(rss, 1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return rows


def in_process(bodies: dict[int, Path], seconds: float) -> list[dict]:
    rows = []
    for target, python in (
        ("walkthrough", WALKTHROUGH_PYTHON),
        ("sdk", Path(sys.executable)),
        ("dispatcher", Path(sys.executable)),
    ):
        for batch in (1, 100):
            output = subprocess.run(
                [
                    "taskset",
                    "-c",
                    str(SERVER_CPU),
                    str(python),
                    "bench/inprocess.py",
                    "--target",
                    target,
                    "--body",
                    str(bodies[batch]),
                    "--invocations",
                    str(batch),
                    "--seconds",
                    str(seconds),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            ).stdout
            rows.append({"target": target, "invocations_per_request": batch, **json.loads(output)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "| server | invocations/request | requests/s (median, min) | invocations/s | p50 ms | p99 ms "
        "| peak RSS MB | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["http"]:
        lines.append(
            f"| {r['server']} | {r['invocations_per_request']} | {r['requests_per_s_median']:,.0f} "
            f"({r['requests_per_s_min']:,.0f}) | {r['invocations_per_s_median']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['peak_rss_mb']} | {r['errors']} |"
        )
    lines += [
        "",
        "| handler (in-process, one core) | invocations/request | requests/s | invocations/s | us/request |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["in_process"]:
        lines.append(
            f"| {r['target']} | {r['invocations_per_request']} | {r['requests_per_s']:,.0f} "
            f"| {r['invocations_per_s']:,.0f} | {r['us_per_request']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--repeat", type=int, default=2, help="wrk runs per point")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    bodies = write_bodies(RESULTS)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}, {os.uname().release}",
        "in_process": in_process(bodies, 3.0),
        "http": [
            row
            for server in servers(args.port)
            for row in measure_server(server, args.port, bodies, args.seconds, args.repeat)
        ],
    }
    out = RESULTS / f"endpoint-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"\nresults: {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
