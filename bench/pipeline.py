"""End-to-end benchmark: the StateFun pipeline against the Quix Streams peer, on one broker, back to back.

Starts its own stack (free ports, temporary run folder) and the peer (bench/peers/quix_app.py, its own
virtualenv: `scripts/bench-venv quix`) beside it, then for each --names point and each of --repeat rounds:
1. throughput: a backlog of --messages records over the point's names, produced as fast as Kafka takes them;
   committed greetings/s read under read_committed, first to last greeting and from the first record sent;
2. latency: --rate records/s for --latency-seconds; produce-to-committed-visible p50/p99/max;
each measured for one system and then the other (never both at once; the order flips every round), with the CPU
seconds per 1,000 greetings and the peak RSS of each of its processes (Kafka included), the runtime's messages per
HTTP request (greeter metrics), and every name's greetings verified 1..k. Each point reports the min and the
median over the rounds and the StateFun/Quix ratio of the medians; the `up` time and, before the points, a
--warmup backlog (the JVMs compile their hot paths in the first tens of thousands of records).

Same input for both: each system has its own input topic (`names`, `names-quix`), and both get the same
records (names, values, order) produced the same way while that system runs; see bench/quix_peer.py for why.
The peer commits its transactions every checkpoint interval, as the runtime's egress does.
With --latency-also-at-ms (e.g. 1000), the latency runs are repeated afterwards at each of those checkpoint and
commit intervals, on a fresh stack and peer each.
With --with-floor, a third system in the same rounds: the same stack with the greeter swapped for the architecture's
floor (bench/peers/floor.py, bench/floor.py), on names of its own; each point then also reports ours/floor and
floor/Quix.
Usage: scripts/bench-pipeline [--names 1,100,1000000] [--messages 300000] [--repeat 2] [--with-floor] ...
(bench/results/)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import load
from bench.baseline import serve_shim, worktree
from bench.floor import FLOOR, FunctionServers
from bench.procstats import dir_bytes
from bench.quix_peer import INPUT_TOPIC, OUTPUT_TOPIC, QuixPeer
from clitools.signals import Terminated, unwinding_on_sigterm
from greeter.config.wiring import GREETINGS_TOPIC, NAMES_TOPIC
from stack import kafka
from stack.config import MODES, Ports, StackConfig
from stack.kafka_auth import CONSUMER, GENERATOR, client_settings
from stack.local import LocalStack
from stack.logs import RetryCounter, delivery_retries

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("statefun", "quix")
# The ratios a point reports when both systems ran: (key, numerator, denominator), medians over medians.
RATIOS = (
    ("statefun_to_quix", "statefun", "quix"),
    ("statefun_to_floor", "statefun", FLOOR),
    ("floor_to_quix", FLOOR, "quix"),
)
# Each system's processes, whose CPU and memory it is charged: the broker's work for it included.
# Every broker of a --brokers 3 stack is the pipeline's own.
STATEFUN_PROCESSES = frozenset({"kafka", "kafka-2", "kafka-3", "runtime", "jobmanager", "taskmanager", "greeter"})
QUIX_PROCESSES = frozenset({"kafka", "quix"})
# The figures a point summarises: (measure, field).
SUMMARISED = (
    ("throughput", "greetings_per_s_first_to_last"),
    ("throughput", "greetings_per_s_from_first_sent"),
    ("throughput", "cpu_seconds_per_1000_greetings_total"),
    ("latency", "p50_ms"),
    ("latency", "p99_ms"),
    ("latency", "max_ms"),
    ("latency", "cpu_seconds_per_1000_greetings_total"),
)


def greeter_batches(stack: LocalStack) -> tuple[float, float]:
    text = urllib.request.urlopen(f"{stack.config.greeter_url}/metrics", timeout=10).read().decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("greeter_invocations_per_request_")
    )
    return float(values["greeter_invocations_per_request_sum"]), float(values["greeter_invocations_per_request_count"])


def targets(
    stack: LocalStack, peer: QuixPeer | None, settle_s: float, servers: FunctionServers | None = None
) -> dict[str, load.Target]:
    """The systems a run can measure; with `servers`, the floor too, each of the two taking the greeter's port in
    turn."""

    def processes() -> dict[str, int]:
        running = {proc.name: proc.pid for proc in stack.state.procs}
        if peer is not None and peer.proc is not None:
            running["quix"] = peer.pid
        return running

    def statefun_batches() -> tuple[float, float]:
        return greeter_batches(stack)

    common: dict[str, Any] = {
        "writer": client_settings(stack.config, GENERATOR),
        "reader": client_settings(stack.config, CONSUMER),
        "processes": processes,
        "settle_s": settle_s,
    }

    def serving(system: str) -> Callable[[], None] | None:
        return None if servers is None else lambda: servers.serve(system)

    found = {
        "statefun": load.Target(
            "statefun",
            NAMES_TOPIC,
            GREETINGS_TOPIC,
            STATEFUN_PROCESSES,
            batches=statefun_batches,
            prepare=serving("statefun"),
            **common,
        )
    }
    if peer is not None:
        found["quix"] = load.Target("quix", INPUT_TOPIC, OUTPUT_TOPIC, QUIX_PROCESSES, **common)
    if servers is not None:  # the same runtime and topics: charged the same processes, the floor as the greeter
        found[FLOOR] = load.Target(
            FLOOR, NAMES_TOPIC, GREETINGS_TOPIC, STATEFUN_PROCESSES, prepare=serving(FLOOR), **common
        )
    return found


def name_pools(label: str, names: int, systems: Iterable[str]) -> dict[str, list[str]]:
    """Each system's names for one measure. The peer gets ours (it keeps its own counts); the floor counts in the
    greeter's runtime, so it gets new names of its own, as long as ours."""
    shared = load.name_pool(label, names)
    return {system: load.name_pool(label, names) if system == FLOOR else shared for system in systems}


def state_bytes(stack: LocalStack, peer: QuixPeer | None) -> dict[str, dict[str, int]]:
    """State on disk: the TaskManager's RocksDB and the retained checkpoints; the peer's RocksDB and changelog."""
    config = stack.config
    found = {
        "statefun": {
            "rocksdb": dir_bytes(config.flink_work_dir / "rocksdb"),
            "checkpoints": dir_bytes(config.checkpoint_dir),
        }
    }
    if peer is not None:
        found["quix"] = peer.state_bytes()
    return found


def summarise(rounds: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    """Per system and figure, the min and the median over the rounds; the RATIOS of the medians."""
    summary: dict[str, Any] = {}
    for system in systems:
        figures: dict[str, Any] = {}
        for measure, name in SUMMARISED:  # a round may hold only some measures (latency at another interval)
            values = [r[system][measure][name] for r in rounds if r[system].get(measure, {}).get(name) is not None]
            if values:
                figures[f"{measure}.{name}"] = {"min": min(values), "median": round(statistics.median(values), 4)}
        figures["correct"] = all(r[system][m]["correct"] for r in rounds for m in r[system])
        summary[system] = figures
    for ratio, numerator, denominator in RATIOS:
        if numerator in summary and denominator in summary:
            ours, theirs = summary[numerator], summary[denominator]
            summary[ratio] = {
                key: round(ours[key]["median"] / theirs[key]["median"], 2)
                for key in ours.keys() & theirs.keys()
                if key != "correct" and theirs[key]["median"]
            }
    return summary


def run_point(
    found: dict[str, load.Target], names: int, args: argparse.Namespace, round_index: int, retries: Callable[[], int]
) -> dict[str, Any]:
    """One round of one point: throughput for each system in turn, then latency for each. Each measure records the
    deliveries the runtime retried while it ran (`retries`: the count so far), so one that fell in a measured window
    (a connection the floor's swap closed, say) is pinned to its figure.
    """
    order = list(found) if round_index % 2 == 0 else list(reversed(found))
    result: dict[str, Any] = {"round": round_index, "order": order}
    backlog, trickle = name_pools(f"tp{names}", names, order), name_pools(f"lat{names}", names, order)

    def counted(measure: Callable[..., dict[str, Any]], *arguments: Any) -> dict[str, Any]:
        before = retries()
        figures = measure(*arguments)
        figures["failed_deliveries"] = retries() - before
        return figures

    for system in order:
        result[system] = {"throughput": counted(load.throughput, found[system], backlog[system], args.messages)}
        say(f"{system} names={names} round {round_index}: throughput {brief(result[system]['throughput'])}")
    for system in order:
        latency = counted(load.latency, found[system], trickle[system], args.rate, args.latency_seconds)
        result[system]["latency"] = latency
        say(f"{system} names={names} round {round_index}: latency {brief(latency)}")
    return result


def brief(measure: dict[str, Any]) -> str:
    keys = ["greetings", "correct", "greetings_per_s_first_to_last", "p50_ms", "p99_ms", "max_ms"]
    keys += ["cpu_seconds_per_1000_greetings_total", "messages_per_request", "failed_deliveries"]
    return json.dumps({key: measure[key] for key in keys if key in measure})


def table(result: dict[str, Any]) -> list[str]:
    """The medians (and the min of greetings/s) per point and system, for the terminal."""
    columns = ("names", "system", "greetings/s (min)", "from sent", "p50/p99/max ms", "CPU s/1000 tp, lat", "ok")
    rows = [columns]
    for point in result["points"]:
        for system in result["systems"]:
            figures = point["summary"][system]

            def med(key: str, figures: dict[str, Any] = figures) -> str:
                return str(figures[key]["median"]) if key in figures else "-"

            rate = "throughput.greetings_per_s_first_to_last"
            lowest = figures[rate]["min"] if rate in figures else "-"
            rows.append(
                (
                    str(point["names"]),
                    system,
                    f"{med(rate)} ({lowest})",
                    med("throughput.greetings_per_s_from_first_sent"),
                    f"{med('latency.p50_ms')}/{med('latency.p99_ms')}/{med('latency.max_ms')}",
                    f"{med('throughput.cpu_seconds_per_1000_greetings_total')}, "
                    f"{med('latency.cpu_seconds_per_1000_greetings_total')}",
                    "yes" if figures["correct"] else "NO",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    for other in result.get("latency_at_other_intervals", []):
        for point in other["points"]:
            for system in result["systems"]:
                figures = point["summary"][system]
                p50, p99, top = (figures[f"latency.{key}"]["median"] for key in ("p50_ms", "p99_ms", "max_ms"))
                ok = "yes" if figures["correct"] else "NO"
                lines.append(f"at {other['checkpoint_interval_ms']} ms, {point['names']} names, {system}: "
                             f"p50/p99/max {p50}/{p99}/{top} ms, correct {ok}")  # fmt: skip
    for point in result["points"]:
        for ratio, numerator, denominator in RATIOS:
            if ratio in point["summary"]:
                ratios = ", ".join(f"{key} {value}" for key, value in sorted(point["summary"][ratio].items()))
                lines.append(f"{numerator}/{denominator} at {point['names']} names (medians): {ratios}")
    return lines


def stack_config(args: argparse.Namespace, run_dir: Path, interval_ms: int, greeter_tree: Path | None) -> StackConfig:
    """The stack of one run: free ports, and the greeter at --greeter-at's revision when one was given."""
    config = StackConfig(
        run_dir=run_dir,
        ports=Ports.free(),
        greeter_workers=args.greeter_workers,
        checkpoint_interval_ms=interval_ms,
        mode=args.mode,
    )
    if greeter_tree is None:
        return config
    return replace(config, venv_bin=serve_shim(greeter_tree, run_dir / "greeter-at"))


def latency_at(interval_ms: int, args: argparse.Namespace, run_root: Path, greeter_tree: Path | None) -> dict[str, Any]:
    """Latency only, at another checkpoint interval: a fresh stack, and the peer committing as often, on new
    names at every point; rounds interleaved as in run_point."""
    config = stack_config(args, run_root / f"interval-{interval_ms}", interval_ms, greeter_tree)
    stack = LocalStack(config, report=lambda line: say(f"[stack] {line}"))
    peer = QuixPeer(config) if "quix" in args.systems else None
    servers = FunctionServers(stack) if FLOOR in args.systems else None
    result: dict[str, Any] = {"checkpoint_interval_ms": interval_ms, "points": []}
    try:
        stack.up(fresh=True)
        if peer is not None:
            kafka.ensure_topics(stack.config, (INPUT_TOPIC, OUTPUT_TOPIC))
            peer.start()
        every = targets(stack, peer, 3 * interval_ms / 1000, servers)
        found = {name: target for name, target in every.items() if name in args.systems}
        for names in args.names:
            rounds = []
            for index in range(args.repeat):
                order = list(found) if index % 2 == 0 else list(reversed(found))
                trickle = name_pools(f"lat{interval_ms}ms{names}", names, order)
                measured: dict[str, Any] = {"round": index, "order": order}
                for system in order:
                    latency = load.latency(found[system], trickle[system], args.rate, args.latency_seconds)
                    measured[system] = {"latency": latency}
                    say(f"{system} names={names} at {interval_ms} ms round {index}: latency {brief(latency)}")
                rounds.append(measured)
            result["points"].append({"names": names, "rounds": rounds, "summary": summarise(rounds, args.systems)})
        result["job_failures"] = stack.failure_count()
        result["failed_deliveries"] = delivery_retries(stack.config)
        if servers is not None:
            result["floor"] = floor_record(servers)
    finally:
        if peer is not None:
            say(f"[bench] Quix peer: {peer.stop()}")
        stack.down()
    return result


def floor_record(servers: FunctionServers) -> dict[str, Any]:
    """What the result says of the floor: its app, and how often it and the greeter swapped on the greeter's port."""
    return {"app": "bench/peers/floor.py", "function_server_swaps": servers.swaps}


def names_list(text: str) -> list[int]:
    try:
        points = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None
    if not points or min(points) < 1:
        raise argparse.ArgumentTypeError(f"counts must be at least 1, got {text!r}")
    return points


def intervals_list(text: str) -> list[int]:
    try:
        intervals = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated milliseconds, got {text!r}") from None
    if min(intervals, default=0) < 100:
        raise argparse.ArgumentTypeError(f"intervals must be at least 100 ms, got {text!r}")
    return intervals


def systems_list(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or set(chosen) - set(SYSTEMS):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SYSTEMS)}, got {text!r}")
    return [system for system in SYSTEMS if system in chosen]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--names",
        type=names_list,
        default=[1, 100, 1_000_000],  # a change is judged at all three: one name sends the largest batches
        help="distinct names per point (default 1,100,1000000)",
    )
    parser.add_argument("--messages", type=int, default=300_000, help="records per throughput backlog")
    parser.add_argument("--warmup", type=int, default=100_000, help="records sent and awaited before measuring")
    parser.add_argument("--rate", type=float, default=1000, help="records/s of the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=2, help="rounds per point (min and median reported)")
    parser.add_argument("--systems", type=systems_list, default=list(SYSTEMS), help="statefun,quix (default both)")
    parser.add_argument(
        "--with-floor",
        action="store_true",
        help="also measure the architecture's floor (bench/peers/floor.py in the greeter's place) in the same rounds",
    )
    parser.add_argument("--greeter-workers", type=int, default=2)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="cluster",
        help="how the runtime runs (default: cluster, the container and Kubernetes topology; scripts/bench-modes "
        "compares the two)",
    )
    parser.add_argument("--checkpoint-interval-ms", type=int, default=2000, help="also the peer's commit interval")
    parser.add_argument(
        "--latency-also-at-ms",
        type=intervals_list,
        default=[],
        help="after the points, latency again at these checkpoint/commit intervals, each on a fresh stack, e.g. 1000",
    )
    parser.add_argument("--out", type=Path, help="the JSON result (default bench/results/pipeline-<time>.json)")
    parser.add_argument("--run-dir", type=Path, help="the stack's run folder, kept (default: a temporary one)")
    parser.add_argument(
        "--greeter-at", metavar="REV", help="run the greeter as it was at this git revision (a before/after figure)"
    )
    args = parser.parse_args(argv)
    args.systems = [*args.systems, FLOOR] if args.with_floor else args.systems
    return args


def measure(
    stack: LocalStack,
    peer: QuixPeer | None,
    args: argparse.Namespace,
    result: dict[str, Any],
    servers: FunctionServers | None = None,
) -> None:
    """Everything after `up`, into `result`; saved after each point, so a long sweep that fails keeps the rest."""
    if peer is not None:
        kafka.ensure_topics(stack.config, (INPUT_TOPIC, OUTPUT_TOPIC))  # the peer's, like ours
        result["peer"] = peer.describe()
        result["peer_up_seconds"] = round(peer.start(), 1)
        say(f"[bench] Quix peer ready in {result['peer_up_seconds']} s (pid {peer.pid})")
    settle_s = 3 * args.checkpoint_interval_ms / 1000  # a late duplicate would be committed by then
    found = {name: target for name, target in targets(stack, peer, settle_s, servers).items() if name in args.systems}
    if args.warmup:
        warm = name_pools("warmup", args.names[0], found)
        result["warmup"] = {name: load.throughput(target, warm[name], args.warmup) for name, target in found.items()}
        say(f"[bench] warm-up: {json.dumps(result['warmup'])}")
    retries = RetryCounter()  # kept between the measures: each count reads only what the task logs gained
    for names in args.names:
        rounds = [
            run_point(found, names, args, index, lambda: retries.count(stack.config)) for index in range(args.repeat)
        ]
        summary = summarise(rounds, args.systems)
        result["points"].append({"names": names, "rounds": rounds, "summary": summary})
        result["points"][-1]["state_bytes"] = state_bytes(stack, peer)
        args.out.write_text(json.dumps(result, indent=2))
    result["job_failures"] = stack.failure_count()
    # Deliveries that failed and were retried (a closed keep-alive connection would show here): should be 0.
    result["failed_deliveries"] = retries.count(stack.config)
    result["correct"] = all(p["summary"][s]["correct"] for p in result["points"] for s in args.systems)
    if servers is not None:
        result["floor"] = floor_record(servers)
    result["complete"] = True


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out = args.out or RESULTS / f"pipeline-{time.strftime('%Y%m%dT%H%M%S')}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keep = nullcontext(str(args.run_dir.resolve())) if args.run_dir else None
    with keep or tempfile.TemporaryDirectory(prefix="bench-stack-") as run_dir, worktree(args.greeter_at) as tree:
        config = stack_config(args, Path(run_dir), args.checkpoint_interval_ms, tree)
        stack = LocalStack(config, report=lambda line: say(f"[stack] {line}"))
        peer = QuixPeer(config) if "quix" in args.systems else None
        servers = FunctionServers(stack) if FLOOR in args.systems else None
        result: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "complete": False,
            "systems": args.systems,
            "greeter_at": tree.name if tree is not None else None,
            "greeter_workers": args.greeter_workers,
            "mode": args.mode,
            "checkpoint_interval_ms": args.checkpoint_interval_ms,
            "messages": args.messages,
            "warmup_messages": args.warmup,
            "rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "repeat": args.repeat,
            "points": [],
        }
        try:
            started = time.monotonic()
            stack.up(fresh=True)
            result["up_seconds"] = round(time.monotonic() - started, 1)
            measure(stack, peer, args, result, servers)
        finally:
            if peer is not None:
                say(f"[bench] Quix peer: {peer.stop()}")
            stack.down()
            if result["points"] or result["complete"]:
                args.out.write_text(json.dumps(result, indent=2))
        for interval_ms in args.latency_also_at_ms if result["complete"] else []:
            other = latency_at(interval_ms, args, Path(run_dir), tree)
            result.setdefault("latency_at_other_intervals", []).append(other)
            result["correct"] = result["correct"] and all(
                point["summary"][system]["correct"] for point in other["points"] for system in args.systems
            )
            args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    retried = f"failed deliveries retried by the runtime: {result.get('failed_deliveries', '-')}"
    for line in [*table(result), retried, f"results: {args.out}"]:
        say(line)
    return 0 if result["correct"] else 1


def cli(run: Callable[[], int] = main) -> int:
    """run() with SIGTERM unwinding like Ctrl-C, so the stack and the peer are stopped by PID either way."""
    try:
        with unwinding_on_sigterm():
            return run()
    except KeyboardInterrupt as interrupt:
        say("[bench] interrupted: what it started is stopped")
        return 143 if isinstance(interrupt, Terminated) else 130


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(cli())
