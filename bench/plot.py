"""How cost grows with the number of distinct names: a PNG from one `bench/pipeline.py` result.

Four panels against distinct names (log scale), one line per system, medians over the rounds: committed
greetings/s on the backlog, p99 produce-to-visible latency at the fixed rate, CPU seconds per 1,000 greetings
(backlog), state on disk. Runs in its own virtualenv (matplotlib): scripts/bench-plot RESULT.json [OUT.png]
"""

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

PANELS = (
    ("throughput.greetings_per_s_first_to_last", "committed greetings/s, first to last (backlog)", 1.0),
    ("latency.p99_ms", "p99 produce-to-visible latency (s)", 1 / 1000),
    ("throughput.cpu_seconds_per_1000_greetings_total", "CPU s per 1,000 greetings (backlog)", 1.0),
)
LABELS = {"statefun": "StateFun + greeter", "quix": "Quix Streams peer"}


def median(point: dict[str, Any], system: str, key: str) -> float | None:
    figure = point["summary"].get(system, {}).get(key)
    return None if figure is None else float(figure["median"])


def state_mb(point: dict[str, Any], system: str) -> float | None:
    parts = point.get("state_bytes", {}).get(system)
    return None if not parts else sum(parts.values()) / 1e6


def plot(result: dict[str, Any], out: Path) -> None:
    points = sorted(result["points"], key=lambda p: p["names"])
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [*PANELS, ("state", "state on disk (MB): RocksDB + checkpoints / changelog", 1.0)]
    for ax, (key, title, scale) in zip(axes.flat, panels, strict=True):
        for system in result["systems"]:
            xs, ys = [], []
            for point in points:
                value = state_mb(point, system) if key == "state" else median(point, system, key)
                if value is not None:
                    xs.append(point["names"])
                    ys.append(value * scale)
            ax.plot(xs, ys, marker="o", label=LABELS.get(system, system))
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("distinct names")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    interval = result.get("checkpoint_interval_ms")
    figure.suptitle(
        f"{result.get('messages', '?')} records per backlog, {result.get('rate', '?')} records/s for latency, "
        f"{interval} ms checkpoints / commits; {result.get('date', '')}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else source.with_suffix(".png")
    plot(json.loads(source.read_text()), out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
