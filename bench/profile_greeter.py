"""Where the greeter's time goes under the many-keys load: one message per request.

Starts a stack (free ports, a temporary run folder), produces --records requests each with a name never seen
before (the runtime batches per name, so every request carries one message), and while the backlog drains
samples the gunicorn workers with py-spy (bench/.venvs/profile) for --seconds. Prints each component's share
of the samples (the innermost project or library frame decides), and keeps py-spy's raw stacks.
Usage: scripts/bench-profile [--records 400000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from bench.load import producer, send
from greeter.config.wiring import NAMES_TOPIC
from stack.config import Ports, StackConfig
from stack.local import LocalStack

PY_SPY = Path(__file__).resolve().parent / ".venvs" / "profile" / "bin" / "py-spy"
RESULTS = Path(__file__).resolve().parent / "results"

# (component, pattern on a frame's file): the innermost frame that matches names the sample's component.
COMPONENTS = (
    ("metrics (prometheus_client, multiprocess files)", r"prometheus_client/|greeter/web/metrics\.py"),
    ("StateFun SDK (addresses, state, typed values)", r"statefun/"),
    ("protobuf (Python side)", r"google/protobuf/"),
    ("the function (validation, greeting)", r"greeter/function/"),
    ("dispatch (greeter/protocol/dispatch.py)", r"greeter/protocol/dispatch\.py"),
    ("/statefun route (greeter/server/asgi.py, greeter/web/endpoint.py)", r"greeter/(server/asgi|web/endpoint)\.py"),
    (
        "HTTP (uvicorn, greeter/server/bounded_http.py, a2wsgi)",
        r"uvicorn/|greeter/server/(worker|bounded_http)\.py|a2wsgi/",
    ),
    ("event loop (uvloop's C code under asyncio.Runner)", r"asyncio/runners\.py"),
)
_FILE = re.compile(r"\(([^:()]+):\d+\)")
# A thread asleep that py-spy's idle detection still samples: the metrics flush thread between flushes (its loop
# is the innermost frame only while it sleeps; a flush puts flush_all's frames under it). Left out of the shares.
_ASLEEP = re.compile(r"^_flush_forever \(greeter/web/metrics\.py:\d+\)$")


def component(frames: list[str]) -> str:
    files = [match.group(1) for frame in frames if (match := _FILE.search(frame))]
    for file in reversed(files):
        for name, pattern in COMPONENTS:
            if re.search(pattern, file):
                return name
    return "other (gunicorn, logging, ...)"


def shares(raw: str) -> list[tuple[str, float]]:
    """py-spy's raw output (`frame;frame;... count` per line) as each component's share of the samples."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and not _ASLEEP.match(frames[-1]):
            counts[component(frames[1:])] += int(count)  # the first "frame" names the process
    total = sum(counts.values()) or 1
    return [(name, 100 * count / total) for name, count in counts.most_common()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    raw_out = RESULTS / f"greeter-profile-{uuid.uuid4().hex[:6]}.txt"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as run_dir:
        stack = LocalStack(StackConfig(run_dir=Path(run_dir), ports=Ports.free(), seen_count_ttl=0), report=print)
        try:
            stack.up(fresh=True)
            kafka, tag = producer(stack.config.bootstrap_servers), uuid.uuid4().hex[:6]
            for index in range(args.records):
                send(kafka, NAMES_TOPIC, f"profile-{tag}-{index}")
            kafka.flush(60)
            spy = [str(PY_SPY), "record", "--pid", str(stack.state.proc("greeter").pid), "--subprocesses"]
            spy += ["--duration", str(args.seconds), "--rate", "200", "--format", "raw", "--nonblocking"]
            subprocess.run([*spy, "--output", str(raw_out)], check=True, timeout=args.seconds + 60)
        finally:
            stack.down()
    for name, share in shares(raw_out.read_text()):
        print(f"{share:5.1f} %  {name}")
    print(f"raw stacks: {raw_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
