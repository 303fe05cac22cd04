"""Every example in every --help runs as written: each is parsed by the real parser of the tool it names.

The help pages are the real parsers' output (every subcommand's too). What counts as an example:
- a `Usage: PROGRAM ...` line of a description (a synopsis: each [optional] part in, each `a | b` alternative
  tried in turn, a CAPITALS placeholder filled with a value its option takes);
- a backticked command: one that starts with a known program, or flags of the page's own tool (`--mode single`;
  a lone `--flag` is a mention, and must be one of the tool's options);
- a known program named in running text and followed by a flag (`python -m certs.tls DIR --host NAME`), up to the
  end of its clause;
- `e.g. VALUE` in an option's help (the option with VALUE) or after `--option (e.g. VALUE)`, and `e.g. -X K=V`;
- `--generator-args='...'` and `--consumer-args='...'`: the inner string split as greeter-stack splits it, and
  parsed by that tool as greeter-stack runs it (after --bootstrap-servers).
argparse's refusals are SystemExit(2); the test fails with argparse's message.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shlex
import sys
import tomllib
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from certs import tls
from consumer import arguments as consumer_arguments
from consumer.cli import command_line
from deploy_render import compose_kafka, kafka_acls, manifests
from generator import cli as generator_cli
from greeter.server import serve
from stack import cli as stack_cli
from stack.config import from_env

ROOT = Path(__file__).resolve().parents[2]
# greeter-stack up runs greeter-generator / greeter-consumer as: the tool, --bootstrap-servers, the split string.
STACK_PREFIX = ["--bootstrap-servers", "127.0.0.1:9092"]
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)?")


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def built_by(function: Callable[..., object], *args: object) -> argparse.ArgumentParser:
    """The parser `function` builds, caught when it would parse: nothing after that runs."""

    def caught(self: argparse.ArgumentParser, *_: object, **__: object) -> None:
        raise _Built(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", caught):
        try:
            function(*args)
        except _Built as built:
            return built.parser
    raise AssertionError(f"{function.__module__}.{function.__name__} parsed no command line")


def main_of(module: str) -> Callable[[], argparse.ArgumentParser]:
    """The parser a module's main() (or parse()) builds."""

    def build() -> argparse.ArgumentParser:
        loaded = importlib.import_module(module)
        entry = getattr(loaded, "parse", None) or loaded.main
        return built_by(entry, []) if entry.__code__.co_argcount else built_by(entry)

    return build


def quix_parser() -> argparse.ArgumentParser:
    """bench/peers/quix_app.py's parser; the peer's own virtualenv has quixstreams, stand-ins take its place here."""

    class Stub:
        def __class_getitem__(cls, item: object) -> type:
            return cls

    names = ("Application", "State", "Deserializer", "SerializationContext", "Serializer")
    stub = types.ModuleType("quixstreams")
    for name in names:
        setattr(stub, name, type(name, (Stub,), {}))
    with mock.patch.dict(
        sys.modules, {"quixstreams": stub, "quixstreams.models": stub, "quixstreams.models.serializers": stub}
    ):
        return main_of("bench.peers.quix_app")()


def stack_parser() -> argparse.ArgumentParser:
    return stack_cli._parser(from_env())


def parse_consumer(argv: Sequence[str]) -> None:
    """As `greeter-consumer` reads its command line (consumer.cli.main): the subcommand line it stands for (Kafka
    flags may come before the subcommand), then parsed and checked."""
    consumer_arguments.parse(command_line(argv))


@dataclass(frozen=True)
class Tool:
    """A program as examples name it, the module whose parser it runs, and how that parser reads a line."""

    names: tuple[str, ...]
    module: str
    parser: Callable[[], argparse.ArgumentParser]
    custom_parse: Callable[[Sequence[str]], None] | None = None

    def parse(self, argv: Sequence[str]) -> None:
        if self.custom_parse is not None:
            self.custom_parse(argv)
        else:
            self.parser().parse_args(argv)


TOOLS = (
    Tool(("greeter-stack", "python -m stack"), "stack.cli", stack_parser),
    Tool(("greeter-generator", "python -m generator"), "generator.cli", generator_cli.build_parser),
    Tool(
        ("greeter-consumer", "python -m consumer"),
        "consumer.arguments",
        consumer_arguments.build_parser,
        parse_consumer,
    ),
    Tool(("greeter-serve",), "greeter.server.serve", serve._parser),
    Tool(("python -m certs.tls",), "certs.tls", tls._parser),
    Tool(("python -m deploy_render",), "deploy_render.manifests", manifests._parser),
    Tool(("python -m deploy_render.compose_kafka",), "deploy_render.compose_kafka", compose_kafka._parser),
    Tool(("python -m deploy_render.kafka_acls",), "deploy_render.kafka_acls", kafka_acls._parser),
    Tool(("scripts/soak", "python -m tests.faults.soak"), "tests.faults.soak", main_of("tests.faults.soak")),
    Tool(
        ("scripts/recovery-ab", "python -m tests.faults.recovery_ab"),
        "tests.faults.recovery_ab",
        main_of("tests.faults.recovery_ab"),
    ),
    Tool(("scripts/bench-endpoint", "python -m bench.endpoint"), "bench.endpoint", main_of("bench.endpoint")),
    Tool(("scripts/bench-limits", "python -m bench.limits"), "bench.limits", main_of("bench.limits")),
    Tool(("scripts/bench-modes", "python -m bench.modes"), "bench.modes", main_of("bench.modes")),
    Tool(("scripts/bench-pipeline", "python -m bench.pipeline"), "bench.pipeline", main_of("bench.pipeline")),
    Tool(("scripts/bench-tuning", "python -m bench.tuning"), "bench.tuning", main_of("bench.tuning")),
    Tool(
        ("scripts/bench-profile", "python -m bench.profile_greeter"),
        "bench.profile_greeter",
        main_of("bench.profile_greeter"),
    ),
    Tool(
        ("scripts/bench-profile memory", "python -m bench.profile_memory"),
        "bench.profile_memory",
        main_of("bench.profile_memory"),
    ),
    Tool(
        ("scripts/bench-profile taskmanager", "python -m bench.profile_taskmanager"),
        "bench.profile_taskmanager",
        main_of("bench.profile_taskmanager"),
    ),
    Tool(("python -m bench.inprocess",), "bench.inprocess", main_of("bench.inprocess")),
    Tool(("bench/peers/aiohttp_app.py",), "bench.peers.aiohttp_app", main_of("bench.peers.aiohttp_app")),
    Tool(("bench/peers/quix_app.py",), "bench.peers.quix_app", quix_parser),
)
BY_NAME = {name: tool for tool in TOOLS for name in tool.names}
# Modules that build a parser whose help no user sees, and why.
NO_HELP_OF_THEIR_OWN = {
    "consumer.cli": "tells the Kafka flags that may come before a subcommand, and the aliases (add_help=False)",
    "bench.peers.walkthrough_app": "the walkthrough's code as written: a --port flag, no help text",
}
# Longest first, so `python -m certs.tls` is not read as `python -m stack` and `.tls`.
_PROGRAM = "|".join(re.escape(name) for name in sorted(BY_NAME, key=len, reverse=True))


@dataclass(frozen=True)
class Page:
    """One --help page: the tool, the subcommands leading to it, its parser and its text."""

    tool: Tool
    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    text: str = field(repr=False)

    @property
    def title(self) -> str:
        return " ".join((self.tool.names[0], *self.path))


@dataclass(frozen=True)
class Example:
    """An invocation found on a page: what it says, and the tool and argv that must parse it."""

    page: str
    kind: str
    text: str
    tool: Tool
    argv: tuple[str, ...]
    problem: str | None = None  # found wrong before parsing

    @property
    def id(self) -> str:
        return f"{self.page}: {self.text} -> {self.tool.names[0]} {' '.join(self.argv)}"


def pages(tool: Tool) -> Iterator[Page]:
    with mock.patch.dict(os.environ, {"COLUMNS": "10000"}):  # one line a paragraph: no example cut in two
        yield from _pages(tool, (), tool.parser())


def _pages(tool: Tool, path: tuple[str, ...], parser: argparse.ArgumentParser) -> Iterator[Page]:
    text = parser.format_help()
    usage = parser.format_usage()  # argparse's own synopsis, made from the parser: always true
    assert text.startswith(usage)
    yield Page(tool, path, parser, text[len(usage) :])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _pages(tool, (*path, name), sub)


def fill(tokens: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """A command line with each CAPITALS placeholder after an option replaced by a value that option takes."""
    filled = list(tokens)
    for index, token in enumerate(tokens):
        if not PLACEHOLDER.fullmatch(token) or index == 0:
            continue
        action = parser._option_string_actions.get(tokens[index - 1].split("=")[0])
        if action is None or action.type is None:
            continue  # a positional or a string option: the word itself is a value
        if action.choices:
            filled[index] = str(next(iter(action.choices)))
            continue
        default = action.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else None if default is None else str(default)
        filled[index] = next(value for value in (shown, "1") if value is not None and _takes(action, value))
    return filled


def _takes(action: argparse.Action, value: str) -> bool:
    assert callable(action.type)
    try:
        action.type(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False
    return True


def synopsis_variants(text: str) -> list[list[str]]:
    """A synopsis as command lines: every [optional] part in; each `a | b` of a part and each `x|y` value tried
    in turn (the other choices at their first); `...` dropped."""
    choices: list[list[list[str]]] = []  # per part of the synopsis: its alternatives, each a token list
    for bracketed, word in re.findall(r"\[([^\[\]]*)\]|([^\s\[\]]+)", text):
        parts = [part.split() for part in (bracketed.split(" | ") if not word else [word])]
        alternatives = [[token for token in part if token != "..."] for part in parts]
        if len(alternatives) == 1:
            tokens = alternatives[0]
            at = [index for index, token in enumerate(tokens) if "|" in token]
            assert len(at) <= 1, f"{text}: two choices in one part"
            if at:
                alternatives = [[*tokens[: at[0]], value, *tokens[at[0] + 1 :]] for value in tokens[at[0]].split("|")]
        choices.append(alternatives)
    variants = [[token for alternatives in choices for token in alternatives[0]]]
    for position, alternatives in enumerate(choices):
        for alternative in alternatives[1:]:
            picked = [alternative if index == position else each[0] for index, each in enumerate(choices)]
            variants.append([token for tokens in picked for token in tokens])
    return variants


def program_at(text: str) -> tuple[Tool, str] | None:
    """The tool a command starts with (after VAR=value assignments and a python interpreter), and the rest."""
    words = text.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words.pop(0)
    if words and Path(words[0]).name.startswith("python") and len(words) > 1 and words[1] != "-m":
        words.pop(0)  # a script run by an interpreter: the script names the tool
    if words and Path(words[0]).name.startswith("python"):
        words[0] = "python"
    line = " ".join(words)
    match = re.match(rf"({_PROGRAM})(?=\s|$)", line)
    if match is None:
        return None
    return BY_NAME[match.group(1)], line[match.end() :].strip()


def _clause(text: str) -> str:
    """Running text up to the end of its clause."""
    return re.split(r"[,;()`]|[.:](?=\s|$)|(?:^|\s)[/|-](?=\s|$)", text, maxsplit=1)[0]


USAGE_LINE = re.compile(r"^Usage: (.*(?:\n[ \t]+\[.*)*)", re.MULTILINE)  # with its [continuation] lines


def units(text: str) -> Iterator[str]:
    """The help text (Usage lines aside) as units of running text, each on one line: a paragraph, or one entry
    (an option or a subcommand with its help) of a section."""
    for paragraph in re.split(r"\n\s*\n", USAGE_LINE.sub("", text)):
        lines = paragraph.strip("\n").splitlines()
        if len(lines) > 1 and re.fullmatch(r"\S.*:", lines[0]) and all(line.startswith("  ") for line in lines[1:]):
            entries: list[list[str]] = []
            for line in lines[1:]:
                if re.match(r"  \S", line) or not entries:
                    entries.append([])
                entries[-1].append(line)
            yield from (" ".join(" ".join(entry).split()) for entry in entries)
        elif lines:
            yield " ".join(paragraph.split())


def examples_on(page: Page) -> Iterator[Example]:
    tool, parser = page.tool, page.parser

    def on_page(kind: str, shown: str, argv: Sequence[str]) -> Example:
        return Example(page.title, kind, shown, tool, (*page.path, *argv))

    def of_tool(kind: str, shown: str, named: Tool, argv: Sequence[str]) -> Example:
        return Example(page.title, kind, shown, named, tuple(argv))

    for match in USAGE_LINE.finditer(page.text):
        line = " ".join(re.split(r"\s{2,}\(", match.group(1), maxsplit=1)[0].split())  # no trailing `  (note)`
        found = program_at(line)
        if found is None:
            yield Example(page.title, "usage", line, tool, (), problem="a Usage line of a program not known here")
            continue
        named, rest = found
        named_parser = named.parser()
        for variant in synopsis_variants(rest):
            yield of_tool("usage", line, named, fill(variant, named_parser))

    for unit in units(page.text):
        for fragment in re.findall(r"`([^`]+)`", unit):
            found = program_at(fragment)
            if found is not None:
                named, rest = found
                yield of_tool("backticked", fragment, named, fill(shlex.split(rest), named.parser()))
            elif fragment.startswith("--"):
                words = shlex.split(fragment)
                if len(words) == 1 and "=" not in words[0]:
                    if words[0] not in parser._option_string_actions:
                        yield Example(page.title, "backticked", fragment, tool, (), problem="no option of this page")
                else:
                    yield on_page("backticked", fragment, fill(words, parser))

        plain = re.sub(r"`[^`]*`", "`", unit)
        for match in re.finditer(rf"(?<![\w/.-])({_PROGRAM})(?=\s+(.*))", plain):
            words = _clause(match.group(2)).split()
            if any(word.startswith("-") for word in words):
                named = BY_NAME[match.group(1)]
                yield of_tool("in text", " ".join([match.group(1), *words]), named, fill(words, named.parser()))

        for match in re.finditer(r"--(generator|consumer)-args=(['\"])(.*?)\2", unit):
            named = BY_NAME[f"greeter-{match.group(1)}"]
            yield on_page("passed on", match.group(0), [match.group(0)])
            yield of_tool("passed on", match.group(0), named, [*STACK_PREFIX, *shlex.split(match.group(3))])

        for option, value in re.findall(r"(--[\w-]+) \(e\.g\. ((?:[^\s,;)]|[,;](?=\S))+)\)", unit):
            yield on_page("e.g.", f"{option} {value}", [option, value])

    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.help or not action.option_strings:
            continue
        for example in re.findall(
            r"e\.g\. (-.*?|(?:[^\s,;)]|[,;](?=\S))+)(?=[,;)]|\s*$)", formatter._expand_help(action)
        ):
            if example.startswith("-"):
                yield on_page("e.g.", example, example.split())
            else:
                option = action.option_strings[-1]
                yield on_page("e.g.", f"{option} {example}", [option, example])


def collect() -> list[Example]:
    found = [example for tool in TOOLS for page in pages(tool) for example in examples_on(page)]
    return list({example.id: example for example in found}.values())


EXAMPLES = collect()


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_every_example_in_a_help_parses_with_the_tool_it_names(example: Example) -> None:
    if example.problem is not None:
        pytest.fail(f"{example.page}: {example.text!r}: {example.problem}")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            example.tool.parse(list(example.argv))
        except SystemExit as exit_:
            pytest.fail(
                f"{example.page}: the example {example.text!r} is refused by {example.tool.names[0]} "
                f"({shlex.join(example.argv)}), exit {exit_.code}:\n{errors.getvalue()}"
            )


def test_the_collector_finds_each_kind_of_example() -> None:
    """So the test cannot pass by finding nothing: each kind of example the help texts use is found."""
    kinds = {example.kind for example in EXAMPLES}
    assert kinds >= {"usage", "backticked", "in text", "passed on", "e.g."}
    texts = {example.text for example in EXAMPLES}
    assert any(text.startswith("--consumer-args=") for text in texts)
    assert any(text.startswith("--generator-args=") for text in texts)
    assert "-X security.protocol=SSL" in texts


def test_a_refused_example_fails() -> None:
    """The check itself: argparse's refusal is caught, for greeter-stack's passed-on arguments too."""
    consumer = BY_NAME["greeter-consumer"]
    with pytest.raises(SystemExit) as refused, contextlib.redirect_stderr(io.StringIO()):
        consumer.parse([*STACK_PREFIX, "tail", "--count", "10"])
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as removed, contextlib.redirect_stderr(io.StringIO()):
        consumer.parse([*STACK_PREFIX, "--json"])  # a flat flag of 0.1.0
    assert removed.value.code == 2
    page = Page(BY_NAME["greeter-stack"], ("up",), stack_parser(), "Usage: greeter-consumer tail [--count 10]")
    (example,) = examples_on(page)
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        example.tool.parse(list(example.argv))


def _modules_building_a_parser() -> set[str]:
    """Every module of the repository that builds an ArgumentParser (tests aside, but for tests/faults: the soak's,
    recovery-ab's)."""
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and name != "__pycache__" and (here.parts != ("tests",) or name == "faults")
        ]
        for name in files:
            if name.endswith(".py") and "ArgumentParser(" in (Path(folder) / name).read_text(encoding="utf-8"):
                found.add(".".join((*here.parts, name.removesuffix(".py"))))
    return found


def test_every_parser_and_command_is_checked() -> None:
    """A new CLI is checked here or said to have no help of its own: every module that builds a parser, every
    console script and every module a script in scripts/ runs."""
    checked = {tool.module for tool in TOOLS}
    assert _modules_building_a_parser() - checked - set(NO_HELP_OF_THEIR_OWN) == set()
    scripts: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, entry in scripts.items():
        assert name in BY_NAME, f"console script {name} ({entry}) is not checked"
    for script in sorted((ROOT / "scripts").iterdir()):
        for module in re.findall(r"python -m ([\w.]+)", script.read_text(encoding="utf-8")):
            if (ROOT / (module.replace(".", "/") + ".py")).is_file():
                assert module in checked, f"scripts/{script.name} runs {module}, which is not checked"


PRODUCT_TOOLS = ("greeter-stack", "greeter-generator", "greeter-consumer", "greeter-serve")


@pytest.mark.parametrize("name", PRODUCT_TOOLS)
def test_every_option_of_the_product_commands_says_what_it_does(name: str) -> None:
    """An option listed with no help text leaves the reader guessing (greeter-stack logs -n, -f were)."""
    silent = [
        f"{page.title} {action.option_strings[-1]}"
        for page in pages(BY_NAME[name])
        for action in page.parser._actions
        if action.option_strings and not action.help
    ]
    assert silent == []
