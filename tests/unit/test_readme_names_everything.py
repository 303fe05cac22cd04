"""The READMEs name every script and every greeter-stack subcommand, so nothing a user can run goes unmentioned.

The subcommands are read from greeter-stack's real parser, so a new one fails here until the READMEs say what it
does.
"""

import argparse
import re
from pathlib import Path

import pytest

from stack.cli import _parser
from stack.config import from_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STACK_README = ROOT / "stack" / "README.md"
SCRIPTS = sorted(path.name for path in (ROOT / "scripts").iterdir() if path.is_file())


def subcommands() -> list[str]:
    parser = _parser(from_env())
    (action,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return sorted(action.choices)


def named(text: str, words: str) -> bool:
    """Whether `words` occur in `text` as a whole: not as the start of a longer name (`up` in `upgrade-greeter`)."""
    return re.search(rf"(?<![\w/-]){re.escape(words)}(?![\w-])", text) is not None


def test_there_are_scripts_and_subcommands() -> None:
    assert "run" in SCRIPTS
    assert {"up", "down", "watch"} <= set(subcommands())


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_readme_names_every_script(script: str) -> None:
    assert named(README.read_text(encoding="utf-8"), f"scripts/{script}"), f"README.md never names scripts/{script}"


@pytest.mark.parametrize("readme", [README, STACK_README], ids=["README.md", "stack/README.md"])
@pytest.mark.parametrize("command", subcommands())
def test_the_readmes_name_every_greeter_stack_subcommand(command: str, readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    assert named(text, f"greeter-stack {command}"), f"{readme.relative_to(ROOT)} never names greeter-stack {command}"
