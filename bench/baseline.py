"""The greeter as it was at an earlier git revision, for before/after figures measured in the same run.

`worktree(REV)` checks the revision out into a temporary git worktree (removed afterwards); it runs on this
checkout's virtualenv. `serve_shim` makes a folder holding a `greeter-serve` that starts that tree's greeter,
for StackConfig.venv_bin: the local stack then runs the old greeter against the same runtime and broker.
"""

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def worktree(revision: str | None) -> Iterator[Path | None]:
    """The repository at `revision` in a temporary worktree named after its short commit; None for None."""
    if revision is None:
        yield None
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as parent:
        tree = Path(parent) / commit
        subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(tree), commit], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


def serve_shim(tree: Path, directory: Path) -> Path:
    """`directory`/greeter-serve running `tree`'s greeter-serve (cwd and import path both the tree; exec keeps
    the PID the stack records). Returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "greeter-serve"
    # greeter-serve's main moved into greeter.server (run through -c: the worker checks the server against that
    # module's class); before that, `python -m greeter.serve` ran it.
    if (tree / "greeter" / "server" / "serve.py").exists():
        run = "-c 'import sys; from greeter.server.serve import main; sys.exit(main(sys.argv[1:]))'"
    else:
        run = "-m greeter.serve"
    shim.write_text(f'#!/bin/sh\ncd "{tree}" && PYTHONPATH="{tree}" exec "{sys.executable}" {run} "$@"\n')
    shim.chmod(0o755)
    return directory
