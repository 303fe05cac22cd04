"""tests/conftest.py's scheduler on a real two-worker run: a folder of SERIAL_GROUPS runs on one worker, one test
after another, and so does each other module. Fails if pytest-xdist's scheduling API changes under it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).parents[1]
MODULES = ["compose/test_a", "k8s/test_b", "e2e/test_c", "e2e/test_d", "unit/test_e", "unit/test_f"]


def _suite(root: Path) -> None:
    (root / "tests").mkdir()
    shutil.copy(TESTS / "conftest.py", root / "tests" / "conftest.py")
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    for module in MODULES:
        path = root / "tests" / f"{module}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text("import pytest\n\n@pytest.mark.parametrize('i', range(3))\ndef test_x(i):\n    pass\n")


def test_each_serial_group_and_each_module_runs_on_one_worker(tmp_path: Path) -> None:
    _suite(tmp_path)

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"},  # this run's own options
    )

    assert run.returncode == 0, run.stdout + run.stderr
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, module in re.findall(r"^\[(gw\d)\] .*PASSED tests/(\w+/test_\w)\.py", run.stdout, re.MULTILINE):
        workers[module].add(worker)
    assert sorted(workers) == sorted(MODULES), run.stdout
    assert all(len(ran_on) == 1 for ran_on in workers.values()), dict(workers)
    assert workers["compose/test_a"] == workers["k8s/test_b"], "compose and k8s share one worker"
    assert workers["e2e/test_c"] == workers["e2e/test_d"], "e2e's tests share one worker (and its stack)"
