"""The layers of docs/architecture.md, held to the code: every import points down.

Each product module belongs to one unit (a top-level package, or a sub-package of greeter/); each unit has a
layer. A module may import its own unit and units on lower layers only, so no arrow points up or sideways.
"""

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first; the same numbers as the picture in docs/architecture.md.
LAYERS: dict[str, int] = {
    "protos": 0,
    "clitools": 0,
    "certs": 0,
    "greeter.config": 1,
    "greeter.protocol": 1,
    "greeter.function": 2,
    "greeter.web": 3,
    "generator": 3,
    "greeter.server": 4,
    "consumer": 4,
    "stack": 4,
    "greeter.app": 5,
    "greeter.dispatch": 5,
    "deploy_render": 5,
    "bench": 5,
}
# The product's packages as the build knows them (the wheel's), and the benchmarks.
_BUILD = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = sorted({*_BUILD["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"], "bench"})


def unit_of(module: str) -> str | None:
    """The unit a dotted module name belongs to (greeter's are its sub-packages), None outside the product."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    return ".".join(parts[:2]) if parts[0] == "greeter" and len(parts) > 1 else parts[0]


def product_modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if ".venvs" in relative.parts or "generated" in relative.parts:
                continue
            yield ".".join(relative.with_suffix("").parts).removesuffix(".__init__"), path


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_every_package_of_the_build_has_a_layer() -> None:
    assert {unit.split(".")[0] for unit in LAYERS} == set(PACKAGES)


def test_every_unit_of_the_product_has_a_layer() -> None:
    units = {unit_of(module) for module, _ in product_modules()} - {"greeter"}  # greeter/__init__.py is empty
    assert units <= LAYERS.keys(), f"place these in LAYERS and docs/architecture.md: {sorted(units - LAYERS.keys())}"


@pytest.mark.parametrize(
    "module,path", [(m, p) for m, p in product_modules() if unit_of(m) in LAYERS], ids=lambda value: str(value)
)
def test_every_import_points_down(module: str, path: Path) -> None:
    source = unit_of(module)
    assert source is not None
    upward = [
        f"{module} imports {imported} ({source}, layer {LAYERS[source]} -> {target}, layer {LAYERS[target]})"
        for imported in imports(path)
        if (target := unit_of(imported)) is not None and target != source and LAYERS[target] >= LAYERS[source]
    ]
    assert not upward, "\n".join(upward)


def test_the_picture_names_every_unit() -> None:
    picture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [unit for unit in LAYERS if unit.replace(".", "/") not in picture]
    assert not missing, f"docs/architecture.md does not show {missing}"
