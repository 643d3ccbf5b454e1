"""The house's structure, checked: no import cycles among helmetlib's modules (function-level imports count;
`if TYPE_CHECKING:` imports, never executed, do not), and no function over 60 lines."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "helmetlib"


def imports_of(path: Path) -> set[str]:
    """The helmetlib modules `path` imports anywhere in its code, outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.module.startswith("helmetlib."):
                found.add(node.module.split(".")[1])
            elif node.module == "helmetlib":
                found.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file())

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("helmetlib."))

    Visitor().visit(ast.parse(path.read_text()))
    return found - {path.stem}


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
    graph = {path.stem: imports_of(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert "engine" in graph["fanout"] and "env" in graph["backend"]  # the graph is really read
    assert cycles(graph) == []


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
