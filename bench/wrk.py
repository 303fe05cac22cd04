"""Run wrk against a URL and read its summary: requests/s and latency percentiles."""

import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

POST_SCRIPT = Path(__file__).with_name("post.lua")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def run_wrk(url: str, body: Path, seconds: int, connections: int, cpu: int) -> WrkResult:
    command = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(POST_SCRIPT), url]
    output = subprocess.run(
        command, env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, check=True
    ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    # wrk prints no distribution for a run in which no request completed (a 4,000-invocation body on a loaded
    # machine): its latencies are then unknown, not a reason to lose the other runs.
    return WrkResult(
        requests,
        rate,
        _ms(percentiles["50"]) if "50" in percentiles else math.nan,
        _ms(percentiles["99"]) if "99" in percentiles else math.nan,
        errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )
