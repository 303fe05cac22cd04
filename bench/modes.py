"""The runtime's two modes side by side in one run: single (one JVM, the quick start's) against cluster (a
JobManager and a TaskManager, the container and Kubernetes topology).

For each of --repeat rounds and each mode (the order flips every round), a fresh stack in a temporary run folder:
1. start-up: `up --fresh` until the job runs (Kafka and the greeter included: the same in both modes), and from
   the same start until the greeting of a request produced when `up` returned is committed;
2. idle: --idle-seconds with no input; CPU as a share of one core and peak RSS, per process;
3. backlog: --warmup records, then --messages records over --names names, measured as `bench-pipeline` measures
   throughput (committed greetings/s, CPU seconds per 1,000 greetings, peak RSS per process), every name's
   greetings verified 1..k.
With --brokers 3 every stack runs three brokers (each one's CPU and RSS is reported under its name); --modes
measures only the modes named.
Usage: scripts/bench-modes [--repeat 2] [--names 100] [--messages 100000] [--brokers 1|3] [--modes single,cluster]
(result: bench/results/modes-<time>.json)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.pipeline import RESULTS, cli, say, targets
from bench.procstats import cpu_seconds, peak_rss_mb, reset_peak_rss
from stack.config import BROKER_COUNTS, MODES, Ports, StackConfig
from stack.local import LocalStack


def first_greeting(target: load.Target, started: float, deadline_s: float = 120) -> float:
    """Seconds from `started` until the greeting of one request produced now is committed."""
    with load.reading(target) as reader:
        kafka = load.producer(target.writer)
        load.send(kafka, target.input_topic, load.name_pool("first", 1)[0])
        kafka.flush(30)
        reader.wait_for(1, deadline_s)
        if not reader.seen:
            raise RuntimeError(f"no greeting committed {deadline_s:.0f} s after the job ran")
        return round(reader.seen[0][0] - started, 1)


def idle(target: load.Target, seconds: float) -> dict[str, Any]:
    """CPU (% of one core) and peak RSS (MB) of each of the target's processes over `seconds` without input."""
    pids = {name: pid for name, pid in target.processes().items() if name in target.own}
    for pid in pids.values():
        reset_peak_rss(pid)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    cpu = {name: round((cpu_seconds(pid) - before[name]) / seconds * 100, 1) for name, pid in pids.items()}
    rss = {name: round(peak_rss_mb(pid)) for name, pid in pids.items()}
    return {"cpu_percent": cpu, "cpu_percent_total": round(sum(cpu.values()), 1), "peak_rss_mb": rss,
            "peak_rss_mb_total": sum(rss.values())}  # fmt: skip


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-modes-{mode}-") as work:
        config = StackConfig(
            run_dir=Path(work) / "run", ports=Ports.free(), mode=mode, seen_count_ttl=0, brokers=args.brokers
        )
        stack = LocalStack(config, report=lambda line: say(f"[stack {mode}] {line}"))
        try:
            started = time.monotonic()
            stack.up(fresh=True)
            result: dict[str, Any] = {"mode": mode, "up_seconds": round(time.monotonic() - started, 1)}
            target = targets(stack, None, 3 * config.checkpoint_interval_ms / 1000)["statefun"]
            result["first_greeting_seconds"] = first_greeting(target, started)
            result["idle"] = idle(target, args.idle_seconds)
            if args.warmup:
                load.throughput(target, load.name_pool("warmup", args.names), args.warmup)
            result["backlog"] = load.throughput(target, load.name_pool(f"tp{args.names}", args.names), args.messages)
            result["backlog"]["peak_rss_mb_total"] = sum(result["backlog"]["peak_rss_mb"].values())
            result["job_failures"] = stack.failure_count()
            return result
        finally:
            stack.down()


FIGURES = (
    ("up_seconds",),
    ("first_greeting_seconds",),
    ("idle", "cpu_percent_total"),
    ("idle", "peak_rss_mb_total"),
    ("backlog", "greetings_per_s_from_first_sent"),
    ("backlog", "cpu_seconds_per_1000_greetings_total"),
    ("backlog", "peak_rss_mb_total"),
)


def figure(measured: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = measured
    for key in path:
        value = value[key]
    return value


def summarise(rounds: list[dict[str, Any]], modes: list[str]) -> dict[str, dict[str, float]]:
    """The median of each figure per mode over the rounds."""
    return {
        mode: {".".join(path): round(statistics.median(figure(r[mode], path) for r in rounds), 4) for path in FIGURES}
        for mode in modes
    }


def _modes(text: str) -> list[str]:
    chosen = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in chosen if mode not in MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"expected modes among {', '.join(MODES)}")
    return chosen


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (the order of the modes flips every round)")
    parser.add_argument("--names", type=int, default=100, help="distinct names of the backlog")
    parser.add_argument("--messages", type=int, default=100_000, help="records of the measured backlog")
    parser.add_argument("--warmup", type=int, default=20_000, help="records sent and awaited before it")
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--brokers", type=int, choices=BROKER_COUNTS, default=1, help="Kafka brokers of each stack")
    parser.add_argument("--modes", type=_modes, default=list(MODES), help="comma-separated (default: both)")
    parser.add_argument("--out", type=Path, help="the JSON result (default bench/results/modes-<time>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.out or RESULTS / f"modes-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result: dict[str, Any] = {"date": date, "args": vars(args) | {"out": str(out)}, "rounds": []}
    for index in range(args.repeat):
        order = list(args.modes) if index % 2 == 0 else list(reversed(args.modes))
        measured: dict[str, Any] = {"round": index, "order": order}
        measured |= {mode: run_mode(mode, args) for mode in order}
        for mode in order:
            say(
                f"[bench] round {index} {mode}: "
                + json.dumps({".".join(p): figure(measured[mode], p) for p in FIGURES})
            )
        result["rounds"].append(measured)
        out.write_text(json.dumps(result, indent=2))
    result["summary"] = summarise(result["rounds"], args.modes)
    result["correct"] = all(r[mode]["backlog"]["correct"] for r in result["rounds"] for mode in args.modes)
    out.write_text(json.dumps(result, indent=2))
    for mode, figures in result["summary"].items():
        print(f"{mode}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    print(f"correct: {result['correct']}; result: {out}")
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(cli(main))
