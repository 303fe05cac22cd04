"""Where the stack's memory goes: each process's peak RSS, and inside each JVM, its heap and native memory.

Starts a stack (`--mode single` by default, the quick start's; `cluster` for the container topology) with Native
Memory Tracking on in every JVM (`-XX:NativeMemoryTracking=summary` in flink-conf's `env.java.opts` and in
KAFKA_OPTS), then measures after start-up (idle) and after each --names backlog of --messages records (every
greeting checked 1..k, as in the pipeline benchmark): per process its RSS and its peak RSS since start (VmHWM); per
JVM the heap in use and committed (`jcmd GC.heap_info`); per JVM what NMT says it committed, by category, and the
RSS it cannot account for (memory allocated outside the JVM, such as RocksDB's through malloc). The result is
printed as Markdown tables and written to bench/results/memory-<time>.json.

Usage: scripts/bench-profile memory [--mode single|cluster] [--names 100,1000000] [--messages 100000]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import load
from bench.pipeline import RESULTS, cli, names_list, say, targets
from bench.procstats import peak_rss_mb, rss_mb
from bench.tuning import stack_environment
from stack.config import MODES, Ports, StackConfig
from stack.flinkconf import setting
from stack.local import LocalStack

NMT = "-XX:NativeMemoryTracking=summary"
JVMS = re.compile(r"^(kafka|runtime|jobmanager|taskmanager(-\d+)?)$")
# The NMT categories the tables show; the rest are summed as "other".
NMT_SHOWN = ("Java Heap", "Class", "Metaspace", "Thread", "Code", "GC", "Internal", "Other", "Symbol")


def jcmd(pid: int, *command: str) -> str:
    done = subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jcmd {pid} {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def heap_mb(output: str) -> dict[str, float]:
    """`jcmd GC.heap_info`'s first heap line (G1: `garbage-first heap total 262144K, used 123456K`), in MB."""
    match = re.search(r"heap\s+total (\d+)K, used (\d+)K", output)
    if match is None:
        raise RuntimeError(f"no heap totals in GC.heap_info:\n{output}")
    return {"committed": int(match.group(1)) / 1024, "used": int(match.group(2)) / 1024}


def nmt_committed_mb(output: str) -> dict[str, float]:
    """`jcmd VM.native_memory summary`: the total and each category's committed memory, in MB."""
    total = re.search(r"Total: reserved=\d+KB, committed=(\d+)KB", output)
    if total is None:
        raise RuntimeError(f"no NMT total (is -XX:NativeMemoryTracking on?):\n{output[:2000]}")
    found = {"total": int(total.group(1)) / 1024}
    for name, committed in re.findall(r"-\s+([A-Za-z ]+?) \(reserved=\d+KB, committed=(\d+)KB\)", output):
        found[name] = int(committed) / 1024
    return found


def snapshot(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Every process's RSS now (the greeter: its master and workers summed); each JVM's heap and NMT."""
    found: dict[str, dict[str, Any]] = {}
    for proc in stack.state.procs:
        entry: dict[str, Any] = {"rss_mb": round(rss_mb(proc.pid), 1)}
        if JVMS.match(proc.name):
            entry["heap_mb"] = heap_mb(jcmd(proc.pid, "GC.heap_info"))
            nmt = nmt_committed_mb(jcmd(proc.pid, "VM.native_memory", "summary", "scale=KB"))
            entry["nmt_committed_mb"] = nmt
            entry["outside_nmt_mb"] = round(entry["rss_mb"] - nmt["total"], 1)
        found[proc.name] = entry
    return found


def measure(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """Idle after start-up, then each backlog: the snapshot after it, and the peak RSS during it."""
    result: dict[str, Any] = {"idle": {"processes": snapshot(stack)}}
    for proc in stack.state.procs:  # the peak since start, before a backlog's window resets it
        result["idle"]["processes"][proc.name]["peak_rss_mb"] = round(peak_rss_mb(proc.pid), 1)
    settle_s = 3 * stack.config.checkpoint_interval_ms / 1000
    target = targets(stack, None, settle_s)["statefun"]
    for names in args.names:
        backlog = load.throughput(target, load.name_pool(f"memory{names}", names), args.messages)
        if not backlog["correct"]:
            raise RuntimeError(f"the {names}-name backlog was not greeted exactly: {backlog['problems']}")
        processes = snapshot(stack)
        for name, peak in backlog["peak_rss_mb"].items():
            processes[name]["peak_rss_mb"] = peak
        result[f"after {names} names"] = {"greetings_per_s": backlog["greetings_per_s_from_first_sent"],
                                          "processes": processes}  # fmt: skip
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    """Per phase: each process's RSS, peak RSS and heap; then each JVM's NMT categories."""
    lines = ["| phase | process | RSS MB | peak RSS MB | heap used / committed MB | outside NMT MB |",
             "| --- | --- | ---: | ---: | --- | ---: |"]  # fmt: skip
    for phase, measured in result["phases"].items():
        for name, entry in measured["processes"].items():
            heap = entry.get("heap_mb")
            heap_cell = f"{heap['used']:.0f} / {heap['committed']:.0f}" if heap else "-"
            outside = entry.get("outside_nmt_mb")
            lines.append(f"| {phase} | {name} | {entry['rss_mb']:.0f} | {entry['peak_rss_mb']:.0f} | {heap_cell} | "
                         f"{'-' if outside is None else format(outside, '.0f')} |")  # fmt: skip
        total = sum(entry["peak_rss_mb"] for entry in measured["processes"].values())
        lines.append(f"| {phase} | **the stack** | | **{total:.0f}** | | |")
    lines += ["", "| phase | JVM | NMT committed MB | " + " | ".join(NMT_SHOWN) + " | other |",
              "| --- | --- | ---: |" + " ---: |" * (len(NMT_SHOWN) + 1)]  # fmt: skip
    for phase, measured in result["phases"].items():
        for name, entry in measured["processes"].items():
            nmt = entry.get("nmt_committed_mb")
            if nmt is None:
                continue
            shown = [nmt.get(category, 0.0) for category in NMT_SHOWN]
            other = nmt["total"] - sum(shown)
            cells = [f"{value:.0f}" for value in (nmt["total"], *shown, other)]
            lines.append(f"| {phase} | {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="single")
    parser.add_argument("--names", type=names_list, default=[100, 1_000_000], help="distinct names per backlog")
    parser.add_argument("--messages", type=int, default=100_000, help="records per backlog")
    parser.add_argument("--out", type=Path, help="the JSON result (default bench/results/memory-<time>.json)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"memory-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        base = StackConfig(run_dir=Path(work) / "run", ports=Ports.free(), mode=args.mode)
        shipped = setting(base, "env.java.opts") or ""
        config = replace(base, flink_overrides=(*base.flink_overrides, ("env.java.opts", f"{shipped} {NMT}".strip())))
        stack = LocalStack(config, report=lambda line: say(f"[stack] {line}"))
        try:
            with stack_environment({"KAFKA_OPTS": NMT}):  # the broker reads it as Kafka's scripts do
                stack.up(fresh=True)
            phases = measure(stack, args)
        finally:
            stack.down()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["scripts/bench-profile memory", *(argv if argv is not None else sys.argv[1:])]),
        "mode": args.mode,
        "messages": args.messages,
        "settings": {"kafka_heap": config.kafka_heap, "runtime_heap": config.runtime_heap,
                     "jobmanager_memory": config.jobmanager_memory, "taskmanager_memory": config.taskmanager_memory},
        "phases": phases,
    }  # fmt: skip
    out.write_text(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    say(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
