"""The per-module score of a mutmut run: run by scripts/mutation from the copy of the tree mutmut ran in.

Reads mutmut's own result files (mutants/<module>.meta: each mutant's exit code) and prints, per module, killed /
total, survived, timeouts and anything else, then every mutant checked and not killed (name and status), one a
line after a `survivors:` line (scripts/mutation shows each one's diff). Exit codes are mutmut's
(mutmut.stats.status_by_exit_code). Usage: python summary.py MODULE.py [MODULE.py ...]
"""

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code  # the mutmut virtualenv's: scripts/mutation runs this with it


def statuses(module: str) -> dict[str, str]:
    meta = json.loads((Path("mutants") / f"{module}.meta").read_text(encoding="utf-8"))
    return {name: status_by_exit_code[code] for name, code in sorted(meta["exit_code_by_key"].items())}


def line(module: str, counts: Counter[str]) -> str:
    total = sum(counts.values())
    killed = counts["killed"]
    score = f"{100 * killed / total:.1f}%" if total else "n/a"
    others = ", ".join(
        f"{status} {count}"
        for status, count in sorted(counts.items())
        if status not in {"killed", "survived", "timeout"}
    )
    return (
        f"{module:<26} killed {killed:>3} / {total:<3} ({score:>6})  survived {counts['survived']:>3}"
        f"  timeouts {counts['timeout']:>2}" + (f"  {others}" if others else "")
    )


def main(modules: list[str]) -> int:
    overall: Counter[str] = Counter()
    survivors: list[str] = []
    print("mutation score (killed / total mutants)")
    for module in modules:
        by_name = statuses(module)
        counts = Counter(by_name.values())
        overall += counts
        # Not checked: left out of a run given mutant names (scripts/mutation NAME...).
        survivors += [f"{name} {status}" for name, status in by_name.items() if status not in {"killed", "not checked"}]
        print("  " + line(module, counts))
    print("  " + line("all", overall))
    print("survivors:")
    for survivor in survivors:
        print(survivor)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
