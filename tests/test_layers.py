"""The package's layers, read from its source: every import runs downward
(core < calibration < engines < models < config < measure < analyse < present
< cli) and no module imports itself back through others.

Every import counts, including those inside functions and under
``TYPE_CHECKING``: a lazy or type-only import is still a dependency.
``from package import name`` depends on the module ``package.name`` when there
is one, else on the package itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "perflab"
LAYERS = (
    "core",
    "calibration",
    "engines",
    "models",
    "config",
    "measure",
    "analyse",
    "present",
    "cli",
)
# Outside the layer folders: the root package (its version) is below everything,
# ``python -m perflab`` is the command line.
OUTSIDE = {"perflab": "core", "perflab.__main__": "cli"}


def module_files(package: Path) -> dict[str, Path]:
    """Every module below ``package``, by dotted name."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules that module ``name`` imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _imported(name, path, node)
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in modules else module)
    return {target for target in found if target in modules and target != name}


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another round in a circle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> str:
    if module in OUTSIDE:
        return OUTSIDE[module]
    return module.split(".")[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module))
    ]


def test_every_module_sits_in_a_layer():
    strays = [name for name in module_files(PACKAGE) if layer_of(name) not in LAYERS]
    assert not strays, f"modules outside the layer folders {LAYERS}: {strays}"


def test_the_walk_sees_the_imports():
    graph = import_graph(PACKAGE)
    assert "perflab.engines.base" in graph["perflab.engines.llamacpp_engine"]
    assert "perflab.config.load" in graph["perflab.cli"]  # imported inside a function


def test_no_module_imports_itself_back():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_layers_import_only_downward():
    upward = upward_imports(import_graph(PACKAGE))
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_a_cycle_and_an_upward_import_are_found(tmp_path):
    package = tmp_path / "perflab"
    for folder in ("core", "config"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("from perflab.core import b\n")
    (package / "core" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from perflab.core.a import x\n"
    )
    (package / "core" / "c.py").write_text("def f():\n    from ..config import d\n")
    (package / "config" / "d.py").write_text("")
    graph = import_graph(package)
    assert cycles(graph) == [["perflab.core.a", "perflab.core.b"]]
    assert upward_imports(graph) == ["perflab.core.c (core) imports perflab.config.d (config)"]
