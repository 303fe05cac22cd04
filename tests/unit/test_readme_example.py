"""The README's example test of a user's own function, run as written, so the README stays true."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_runs_and_its_test_passes() -> None:
    section = README.read_text(encoding="utf-8").split("### Testing your own functions", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), "README.md example", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert tests, "the example has no test function"
    for test in tests:
        test()
