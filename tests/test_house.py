"""The house's structure, checked: no import cycles among helmetlib's modules (function-level imports count;
`if TYPE_CHECKING:` imports, never executed, do not; the floors' order: test_layer_order), no function over 60
lines, no class over 200, no module over 500, and no module that git ignores (a clean clone would lack it)."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helmetlib"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    """The dotted name of a source file of the package ("helmetlib.data.photos")."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(part for part in relative.parts if part != "__init__")


MODULES = {module_name(path) for path in SOURCES}


def imports_of(path: Path) -> set[str]:
    """The helmetlib modules (dotted names) `path` imports anywhere in its code, outside `if TYPE_CHECKING:`
    blocks; `from helmetlib.floor import module` names the module."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.module.split(".")[0] == "helmetlib":
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else node.module)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names if alias.name.startswith("helmetlib."))

    Visitor().visit(ast.parse(path.read_text()))
    return found - {module_name(path), "helmetlib"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's modules, each cycle once (found by depth-first search from each module)."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for module in sorted(graph.get(path[-1], ())):
            if module in path:
                cycle = path[path.index(module) :]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            else:
                walk([*path, module])

    for module in graph:
        walk([module])
    return [list(cycle) for cycle in sorted(found)]


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_helmetlib_has_no_import_cycles():
    graph = {module_name(path): imports_of(path) for path in SOURCES}
    assert "helmetlib.runner.engine" in graph["helmetlib.runner.fanout"]  # the graph is really read
    assert "helmetlib.core.env" in graph["helmetlib.core.backend"]
    assert cycles(graph) == []


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{module_name(path)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_no_class_over_200_lines_and_no_module_over_500():
    long = [f"{module_name(path)} ({len(path.read_text().splitlines())} lines)" for path in SOURCES]
    long = [entry for entry, path in zip(long, SOURCES, strict=True) if len(path.read_text().splitlines()) > 500]
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 200:
                long.append(f"{module_name(path)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_git_ignores_no_module_of_the_package():
    """An ignore pattern such as `data/` also matches `helmetlib/data/`: the clean clone CI tests would miss it."""
    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: nothing to compare")
    listed = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, SOURCES)], cwd=root, capture_output=True, text=True
    )
    assert listed.stdout.split() == []
