"""helmetlib's floors, checked from the source: each subpackage imports only from the floors below it, and no two
floors import each other (`if TYPE_CHECKING:` imports count here: a type is a dependency too)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "helmetlib"
FLOORS = ("core", "data", "evaluation", "run", "models", "training", "deploy", "reports", "runner", "commands")
TOP_LEVEL = {"__init__": "commands", "kernel": "commands", "__main__": "commands"}  # entry points, above everything


def floor_of(module: str) -> str | None:
    """The floor of a dotted helmetlib module name ("helmetlib.data.dataset.photos" -> "data"), None for the package."""
    parts = module.split(".")
    if parts[0] != "helmetlib" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in FLOORS else TOP_LEVEL.get(parts[1])


def floor_imports(path: Path) -> set[str]:
    """The floors `path` imports from, anywhere in its code, type-only imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "helmetlib":
                found.update(filter(None, (floor_of(f"helmetlib.{alias.name}") for alias in node.names)))
            else:
                found.add(floor_of(node.module))
        elif isinstance(node, ast.Import):
            found.update(floor_of(alias.name) for alias in node.names)
    return found - {None}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """`module imports floor` for every import from a floor above the module's own."""
    rank = {floor: index for index, floor in enumerate(FLOORS)}
    return sorted(
        f"{module} imports {floor}"
        for module, floors in graph.items()
        for floor in floors
        if rank[floor] > rank[floor_of(module)]
    )


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(part for part in relative.parts if part != "__init__")
        graph[module] = floor_imports(path)
    return graph


def test_the_checker_finds_an_import_from_above_and_a_type_only_one(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom helmetlib.core.records import Record\n"
        "if TYPE_CHECKING:\n    from helmetlib.runner.engine import Stage\n"
    )
    assert floor_imports(source) == {"core", "runner"}
    assert violations({"helmetlib.data.dataset.m": floor_imports(source)}) == [
        "helmetlib.data.dataset.m imports runner"
    ]
    assert violations({"helmetlib.runner.x": {"core", "data"}}) == []


def test_every_module_sits_on_a_floor_and_imports_only_from_floors_below():
    graph = module_graph()
    assert {floor_of(module) for module in graph} - {None} == set(FLOORS)  # the floors are really read
    assert graph["helmetlib.training.repeats"] >= {"core", "data", "models"}
    assert violations({module: floors for module, floors in graph.items() if floor_of(module)}) == []


def test_no_two_floors_import_each_other():
    graph = module_graph()
    edges = {(floor_of(module), floor) for module, floors in graph.items() for floor in floors if floor_of(module)}
    assert sorted((a, b) for a, b in edges if a != b and (b, a) in edges) == []
