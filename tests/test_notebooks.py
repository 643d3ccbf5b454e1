"""The jupytext pairs: in sync, output-free, each with a parameters cell first (no kernel started)."""

import json
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_notebooks_are_found():
    assert [path.stem for path in SOURCES] == ["00_eda", "10_model", "20_comparison"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_pair_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired} missing: run `jupytext --sync {source}`"
    text, ipynb = jupytext.read(source), nbformat.read(paired, as_version=4)
    cells = [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in text.cells]
    assert cells == [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in ipynb.cells], (
        f"{paired} is out of sync with {source}: run `jupytext --sync {source}`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_committed_ipynb_is_output_free(source):
    notebook = json.loads(source.with_suffix(".ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_parameters_cell_is_the_first_code_cell(source):
    cells = [cell for cell in jupytext.read(source).cells if cell.cell_type == "code"]
    assert "parameters" in cells[0].metadata.get("tags", [])
    assert cells[0].source.splitlines()[0].split("=")[0].strip().isupper()
    assert all("parameters" not in cell.metadata.get("tags", []) for cell in cells[1:])
    assert "def " not in "".join(cell.source for cell in cells), "helpers belong in helmetlib, not in notebooks"
